package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// connConfig is the provider configuration (the upstream provider's names and defaults).
type connConfig struct {
	host, username, password, database, sslmode, sslrootcert string
	port, connectTimeout, maxConnections                     int
	superuser                                                bool
}

// cfgString reads a provider config value: the SDK sends non-string values JSON-encoded.
func cfgString(v resource.PropertyValue) string {
	switch {
	case v.IsSecret():
		return cfgString(v.SecretValue().Element)
	case v.IsString():
		return v.StringValue()
	case v.IsNumber():
		return strconv.FormatFloat(v.NumberValue(), 'f', -1, 64)
	case v.IsBool():
		return strconv.FormatBool(v.BoolValue())
	}
	return ""
}

func parseConnConfig(args resource.PropertyMap) (connConfig, error) {
	get := func(keys ...string) string {
		for _, k := range keys {
			if s := cfgString(args[resource.PropertyKey(k)]); s != "" {
				return s
			}
		}
		return ""
	}
	envOr := func(v, env, def string) string {
		if v != "" {
			return v
		}
		if e := strings.TrimSpace(os.Getenv(env)); e != "" {
			return e
		}
		return def
	}
	atoi := func(name, s string, def int) (int, error) {
		if s == "" {
			return def, nil
		}
		var n int
		if err := json.Unmarshal([]byte(s), &n); err != nil {
			return 0, fmt.Errorf("%s: %q is not an integer", name, s)
		}
		return n, nil
	}
	c := connConfig{
		host:        envOr(get("host"), "PGHOST", ""),
		username:    envOr(get("username"), "PGUSER", "postgres"),
		password:    envOr(get("password"), "PGPASSWORD", ""),
		database:    envOr(get("database"), "PGDATABASE", "postgres"),
		sslmode:     envOr(get("sslmode", "sslMode"), "PGSSLMODE", "prefer"),
		sslrootcert: get("sslrootcert"),
	}
	var err error
	if c.port, err = atoi("port", envOr(get("port"), "PGPORT", ""), 5432); err != nil {
		return c, err
	}
	if c.connectTimeout, err = atoi("connectTimeout", envOr(get("connectTimeout"), "PGCONNECT_TIMEOUT", ""), 180); err != nil {
		return c, err
	}
	if c.maxConnections, err = atoi("maxConnections", get("maxConnections"), 20); err != nil {
		return c, err
	}
	c.superuser = get("superuser") != "false"
	return c, nil
}

func (p *pgProvider) connString(c connConfig, database string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(c.username, c.password),
		Host:   net.JoinHostPort(c.host, strconv.Itoa(c.port)),
		Path:   "/" + database,
	}
	q := url.Values{}
	q.Set("sslmode", c.sslmode)
	if c.sslrootcert != "" {
		q.Set("sslrootcert", c.sslrootcert)
	}
	q.Set("connect_timeout", strconv.Itoa(c.connectTimeout))
	q.Set("application_name", "pulumi-resource-postgresql")
	u.RawQuery = q.Encode()
	return u.String()
}

// pool returns a connection pool to database ("" = the provider's database).
func (p *pgProvider) pool(ctx context.Context, database string) (*pgxpool.Pool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.config {
		return nil, errors.New("the postgresql provider is not configured")
	}
	if p.cfg.host == "" {
		return nil, errors.New("the postgresql provider has no host: set postgresql:host (or the provider's host)")
	}
	if database == "" {
		database = p.cfg.database
	}
	if pl, ok := p.pools[database]; ok {
		return pl, nil
	}
	pc, err := pgxpool.ParseConfig(p.connString(p.cfg, database))
	if err != nil {
		return nil, err
	}
	maxConns := p.cfg.maxConnections
	if maxConns <= 0 || maxConns > 4 {
		maxConns = 4
	}
	pc.MaxConns = int32(maxConns)
	pc.MaxConnIdleTime = 30 * time.Second
	pl, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s:%d/%s as %s: %w", p.cfg.host, p.cfg.port, database, p.cfg.username, err)
	}
	p.pools[database] = pl
	return pl, nil
}

// closePool drops the pool of a database (before the database itself is dropped or renamed).
func (p *pgProvider) closePool(database string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl, ok := p.pools[database]; ok {
		pl.Close()
		delete(p.pools, database)
	}
}

// exec runs statements in one transaction on database ("" = the provider's database).
func (p *pgProvider) exec(ctx context.Context, database string, stmts ...string) error {
	pl, err := p.pool(ctx, database)
	if err != nil {
		return err
	}
	tx, err := pl.Begin(ctx)
	if err != nil {
		return err
	}
	return runInTx(ctx, tx, stmts)
}

// runInTx runs statements in tx and commits; any error rolls it back.
func runInTx(ctx context.Context, tx pgx.Tx, stmts []string) error {
	defer func() { _ = tx.Rollback(ctx) }()
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", redact(s), err)
		}
	}
	return tx.Commit(ctx)
}

// execNoTx runs statements outside a transaction (CREATE/DROP DATABASE cannot run in one).
func (p *pgProvider) execNoTx(ctx context.Context, database string, stmts ...string) error {
	pl, err := p.pool(ctx, database)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := pl.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", redact(s), err)
		}
	}
	return nil
}

func (p *pgProvider) queryRow(ctx context.Context, database, sql string, args []any, dest ...any) (bool, error) {
	pl, err := p.pool(ctx, database)
	if err != nil {
		return false, err
	}
	err = pl.QueryRow(ctx, sql, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (p *pgProvider) queryStrings(ctx context.Context, database, sql string, args ...any) ([]string, error) {
	pl, err := p.pool(ctx, database)
	if err != nil {
		return nil, err
	}
	rows, err := pl.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// redact hides password literals in statements that end up in error messages.
func redact(stmt string) string {
	if i := strings.Index(strings.ToUpper(stmt), "PASSWORD '"); i >= 0 {
		return stmt[:i] + "PASSWORD '***'"
	}
	return stmt
}

// databaseVanished: the error says the database does not exist (SQLSTATE 3D000), e.g. because it was
// dropped between listing the databases and connecting to one of them.
func databaseVanished(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

// isSuperuser: the provider was configured as superuser (it may read pg_authid).
func (p *pgProvider) isSuperuser() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.config && p.cfg.superuser
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// roleIdent quotes a role name; "public" is the PUBLIC pseudo-role, as upstream.
func roleIdent(s string) string {
	if strings.EqualFold(s, "public") {
		return "PUBLIC"
	}
	return ident(s)
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// props reads resource inputs/outputs.
type props resource.PropertyMap

func (m props) has(k string) bool {
	v, ok := m[resource.PropertyKey(k)]
	return ok && !v.IsNull()
}

func (m props) str(k, def string) string {
	v, ok := m[resource.PropertyKey(k)]
	if ok && v.IsSecret() {
		v = v.SecretValue().Element
	}
	if ok && v.IsString() {
		return v.StringValue()
	}
	return def
}

func (m props) boolean(k string, def bool) bool {
	v, ok := m[resource.PropertyKey(k)]
	if ok && v.IsBool() {
		return v.BoolValue()
	}
	return def
}

func (m props) num(k string, def int) int {
	v, ok := m[resource.PropertyKey(k)]
	if ok && v.IsNumber() {
		return int(v.NumberValue())
	}
	return def
}

func (m props) strs(k string) []string {
	v, ok := m[resource.PropertyKey(k)]
	if !ok || !v.IsArray() {
		return nil
	}
	out := make([]string, 0, len(v.ArrayValue()))
	for _, e := range v.ArrayValue() {
		if e.IsString() {
			out = append(out, e.StringValue())
		}
	}
	return out
}

func (m props) setDefault(k string, v resource.PropertyValue) {
	if !m.has(k) {
		m[resource.PropertyKey(k)] = v
	}
}

func (m props) copyMap() resource.PropertyMap { return resource.PropertyMap(m).Copy() }

func strArray(ss []string) resource.PropertyValue {
	vals := make([]resource.PropertyValue, 0, len(ss))
	for _, s := range ss {
		vals = append(vals, resource.NewStringProperty(s))
	}
	return resource.NewArrayProperty(vals)
}

func required(m props, keys ...string) []*pulumirpc.CheckFailure {
	var out []*pulumirpc.CheckFailure
	for _, k := range keys {
		v, ok := m[resource.PropertyKey(k)]
		if !ok || v.IsNull() || (v.IsString() && v.StringValue() == "") {
			out = append(out, &pulumirpc.CheckFailure{Property: k, Reason: "missing required property '" + k + "'"})
		}
	}
	return out
}
