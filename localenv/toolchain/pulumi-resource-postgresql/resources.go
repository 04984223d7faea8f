package main

import (
	"context"
	"crypto/md5" //nolint:gosec // PostgreSQL's md5 verifier format, compared as upstream does
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

var (
	vTrue  = resource.NewBoolProperty(true)
	vFalse = resource.NewBoolProperty(false)
)

func vStr(s string) resource.PropertyValue { return resource.NewStringProperty(s) }
func vNum(n int) resource.PropertyValue    { return resource.NewNumberProperty(float64(n)) }

func keys(ks ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// ------------------------------------------------------------------------------------------- Role

type roleKind struct{}

func (roleKind) check(in props) []*pulumirpc.CheckFailure {
	for _, k := range []string{"login", "superuser", "createDatabase", "createRole", "replication",
		"bypassRowLevelSecurity", "skipDropRole", "skipReassignOwned"} {
		in.setDefault(k, vFalse)
	}
	in.setDefault("inherit", vTrue)
	in.setDefault("encryptedPassword", vTrue)
	in.setDefault("connectionLimit", vNum(-1))
	in.setDefault("validUntil", vStr("infinity"))
	in.setDefault("statementTimeout", vNum(0))
	in.setDefault("idleInTransactionSessionTimeout", vNum(0))
	fails := required(in, "name")
	// As upstream's schema validators (validation.IntAtLeast) in resourcePostgreSQLRole.
	fails = append(fails, atLeast(in, "connectionLimit", "connection_limit", -1)...)
	fails = append(fails, atLeast(in, "statementTimeout", "statement_timeout", 0)...)
	fails = append(fails, atLeast(in, "idleInTransactionSessionTimeout", "idle_in_transaction_session_timeout", 0)...)
	if in.has("passwordWo") {
		fails = append(fails, &pulumirpc.CheckFailure{Property: "passwordWo",
			Reason: "passwordWo is not supported by this locally built postgresql provider: use password"})
	}
	return fails
}

func (roleKind) replaceKeys() map[string]bool { return keys() }
func (roleKind) computed() []string           { return nil }

func roleOptions(in props, withPassword bool) string {
	flag := func(on bool, yes, no string) string {
		if on {
			return yes
		}
		return no
	}
	var opts []string
	if withPassword {
		// As upstream resourcePostgreSQLRoleCreate / setRolePassword: the value goes into PASSWORD
		// '<value>' as given, so a SCRAM-SHA-256 or md5 verifier is stored as is by PostgreSQL;
		// "NULL" (any case) means no password. An empty password clears it (PostgreSQL treats
		// PASSWORD '' as NULL).
		pw := in.str("password", "")
		switch {
		case pw == "" || strings.EqualFold(pw, "NULL"):
			opts = append(opts, "PASSWORD NULL")
		case in.boolean("encryptedPassword", true):
			opts = append(opts, "ENCRYPTED PASSWORD "+literal(pw))
		default:
			opts = append(opts, "PASSWORD "+literal(pw))
		}
	}
	validUntil := in.str("validUntil", "infinity")
	if validUntil == "" || strings.EqualFold(validUntil, "infinity") {
		validUntil = "infinity"
	}
	opts = append(opts,
		"VALID UNTIL "+literal(validUntil),
		fmt.Sprintf("CONNECTION LIMIT %d", in.num("connectionLimit", -1)),
		flag(in.boolean("superuser", false), "SUPERUSER", "NOSUPERUSER"),
		flag(in.boolean("createDatabase", false), "CREATEDB", "NOCREATEDB"),
		flag(in.boolean("createRole", false), "CREATEROLE", "NOCREATEROLE"),
		flag(in.boolean("inherit", true), "INHERIT", "NOINHERIT"),
		flag(in.boolean("login", false), "LOGIN", "NOLOGIN"),
		flag(in.boolean("bypassRowLevelSecurity", false), "BYPASSRLS", "NOBYPASSRLS"),
		flag(in.boolean("replication", false), "REPLICATION", "NOREPLICATION"),
	)
	return strings.Join(opts, " ")
}

// roleSettings are the per-role settings (ALTER ROLE ... SET) the resource manages.
func roleSettings(name string, in props) []string {
	r := ident(name)
	var out []string
	if sp := in.strs("searchPaths"); len(sp) > 0 {
		quoted := make([]string, 0, len(sp))
		for _, s := range sp {
			quoted = append(quoted, ident(s))
		}
		out = append(out, fmt.Sprintf("ALTER ROLE %s SET search_path TO %s", r, strings.Join(quoted, ", ")))
	} else {
		out = append(out, fmt.Sprintf("ALTER ROLE %s RESET search_path", r))
	}
	for key, setting := range map[string]string{
		"statementTimeout":                "statement_timeout",
		"idleInTransactionSessionTimeout": "idle_in_transaction_session_timeout",
	} {
		if n := in.num(key, 0); n > 0 {
			out = append(out, fmt.Sprintf("ALTER ROLE %s SET %s TO %d", r, setting, n))
		} else {
			out = append(out, fmt.Sprintf("ALTER ROLE %s RESET %s", r, setting))
		}
	}
	if a := in.str("assumeRole", ""); a != "" {
		out = append(out, fmt.Sprintf("ALTER ROLE %s SET role TO %s", r, ident(a)))
	} else {
		out = append(out, fmt.Sprintf("ALTER ROLE %s RESET role", r))
	}
	sort.Strings(out)
	return out
}

func (roleKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	name := in.str("name", "")
	stmts := []string{fmt.Sprintf("CREATE ROLE %s WITH %s", ident(name), roleOptions(in, true))}
	for _, g := range in.strs("roles") {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", ident(g), ident(name)))
	}
	stmts = append(stmts, roleSettings(name, in)...)
	if err := p.exec(ctx, "", stmts...); err != nil {
		return "", nil, err
	}
	return name, in.copyMap(), nil
}

// read mirrors upstream resource_postgresql_role.go resourcePostgreSQLRoleReadImpl: every flag,
// the connection limit, valid until (COALESCE(rolvaliduntil::TEXT, 'infinity')), the member roles
// and the rolconfig settings are read back and replace the state, so `pulumi up --refresh` repairs
// a change made by hand; the password goes through readRolePassword.
func (roleKind) read(ctx context.Context, p *pgProvider, id string, state props) (resource.PropertyMap, error) {
	var login, super, createdb, createrole, inherit, repl, bypass bool
	var connlimit int
	var validUntil string
	var memberOf, config []string
	found, err := p.queryRow(ctx, "", `SELECT ARRAY(SELECT pg_get_userbyid(roleid) FROM pg_catalog.pg_auth_members
			WHERE member = r.oid), r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolinherit,
		r.rolreplication, r.rolbypassrls, r.rolconnlimit, COALESCE(r.rolvaliduntil::TEXT, 'infinity'),
		COALESCE(r.rolconfig, '{}') FROM pg_catalog.pg_roles r WHERE r.rolname = $1`,
		[]any{id}, &memberOf, &login, &super, &createdb, &createrole, &inherit, &repl, &bypass, &connlimit,
		&validUntil, &config)
	if err != nil || !found {
		return nil, err
	}
	out := state.copyMap()
	out["name"] = vStr(id)
	out["login"] = resource.NewBoolProperty(login)
	out["superuser"] = resource.NewBoolProperty(super)
	out["createDatabase"] = resource.NewBoolProperty(createdb)
	out["createRole"] = resource.NewBoolProperty(createrole)
	out["inherit"] = resource.NewBoolProperty(inherit)
	out["replication"] = resource.NewBoolProperty(repl)
	out["bypassRowLevelSecurity"] = resource.NewBoolProperty(bypass)
	out["connectionLimit"] = vNum(connlimit)
	out["validUntil"] = vStr(validUntil)
	out["encryptedPassword"] = vTrue
	// roles is a set upstream: order does not count.
	sort.Strings(memberOf)
	old := state.strs("roles")
	sort.Strings(old)
	if !slices.Equal(old, memberOf) {
		out["roles"] = strArray(memberOf)
	}
	settings, err := readRoleConfig(config)
	if err != nil {
		return nil, err
	}
	for k, v := range settings {
		if k == "searchPaths" && len(v.ArrayValue()) == 0 && !state.has(k) {
			continue // upstream sets an empty list, which the bridge shows as absent
		}
		if k == "assumeRole" && v.StringValue() == "" && !state.has(k) {
			continue
		}
		out[resource.PropertyKey(k)] = v
	}
	pw, err := p.readRolePassword(ctx, id, state.str("password", ""), login)
	if err != nil {
		return nil, err
	}
	if pw != state.str("password", "") {
		out["password"] = vStr(pw)
	}
	return out, nil
}

// readRoleConfig reads the settings the resource manages out of pg_roles.rolconfig, as upstream
// resource_postgresql_role.go readSearchPath, readStatementTimeout,
// readIdleInTransactionSessionTimeout and readAssumeRole do (a missing setting reads as empty / 0).
func readRoleConfig(config []string) (map[string]resource.PropertyValue, error) {
	out := map[string]resource.PropertyValue{
		"searchPaths":                     strArray(nil),
		"statementTimeout":                vNum(0),
		"idleInTransactionSessionTimeout": vNum(0),
		"assumeRole":                      vStr(""),
	}
	for _, c := range config {
		key, val, _ := strings.Cut(c, "=")
		switch key {
		case "search_path":
			parts := strings.Split(val, ", ")
			for i := range parts {
				parts[i] = strings.Trim(parts[i], `"`)
			}
			out["searchPaths"] = strArray(parts)
		case "statement_timeout", "idle_in_transaction_session_timeout":
			n, err := strconv.Atoi(strings.Split(val, ", ")[0])
			if err != nil {
				return nil, fmt.Errorf("Error reading %s: %w", key, err)
			}
			if key == "statement_timeout" {
				out["statementTimeout"] = vNum(n)
			} else {
				out["idleInTransactionSessionTimeout"] = vNum(n)
			}
		case "role":
			out["assumeRole"] = vStr(val)
		}
	}
	return out, nil
}

// readRolePassword mirrors upstream resource_postgresql_role.go readRolePassword: the state's
// password is kept when the role cannot log in or the provider is not configured as superuser;
// otherwise pg_shadow is read and
//   - a plaintext state password whose md5(password || role) equals the server's md5 verifier is kept;
//   - a plaintext state password is kept whenever the server holds a SCRAM-SHA-256 verifier
//     (upstream's TODO: no SCRAM check, so a password changed by hand is NOT seen as drift);
//   - in every other case (a state value that is itself a verifier starting with "md5" or
//     "SCRAM-SHA-256", an md5 mismatch, no password on the server) the server's value is returned,
//     so it differs from the state when the password was changed by hand: drift.
//
// The value is returned to the engine (a secret output) and never logged.
func (p *pgProvider) readRolePassword(ctx context.Context, role, statePassword string, canLogin bool) (string, error) {
	if !canLogin || !p.isSuperuser() {
		return statePassword, nil
	}
	var super bool
	if _, err := p.queryRow(ctx, "", `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`, nil, &super); err != nil {
		return "", err
	}
	if !super {
		p.mu.Lock()
		user := p.cfg.username
		p.mu.Unlock()
		return "", fmt.Errorf("could not read role password from Postgres as connected user %s is not a SUPERUSER. "+
			"You can set `superuser = false` in the provider configuration so it will not try to read the password from Postgres", user)
	}
	var server string
	found, err := p.queryRow(ctx, "", `SELECT COALESCE(passwd, '') FROM pg_catalog.pg_shadow WHERE usename = $1`,
		[]any{role}, &server)
	if err != nil {
		return "", fmt.Errorf("Error reading role: %w", err)
	}
	if !found {
		return "", nil
	}
	return comparePassword(statePassword, role, server), nil
}

// comparePassword is the decision part of upstream readRolePassword (see there).
func comparePassword(statePassword, role, server string) string {
	if statePassword != "" && !strings.HasPrefix(statePassword, "md5") && !strings.HasPrefix(statePassword, "SCRAM-SHA-256") {
		if strings.HasPrefix(server, "md5") {
			sum := md5.Sum([]byte(statePassword + role)) //nolint:gosec // PostgreSQL's md5 verifier format
			if "md5"+hex.EncodeToString(sum[:]) == server {
				return statePassword
			}
		}
		if strings.HasPrefix(server, "SCRAM-SHA-256") {
			return statePassword
		}
	}
	return server
}

func (roleKind) update(ctx context.Context, p *pgProvider, id string, olds, news props) (resource.PropertyMap, error) {
	name := news.str("name", id)
	var stmts []string
	if name != id {
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s RENAME TO %s", ident(id), ident(name)))
	}
	passwordChanged := olds.str("password", "") != news.str("password", "") || name != id
	stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s WITH %s", ident(name), roleOptions(news, passwordChanged)))
	oldRoles, newRoles := olds.strs("roles"), news.strs("roles")
	for _, g := range oldRoles {
		if !slices.Contains(newRoles, g) {
			stmts = append(stmts, fmt.Sprintf("REVOKE %s FROM %s", ident(g), ident(name)))
		}
	}
	for _, g := range newRoles {
		if !slices.Contains(oldRoles, g) {
			stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", ident(g), ident(name)))
		}
	}
	stmts = append(stmts, roleSettings(name, news)...)
	if err := p.exec(ctx, "", stmts...); err != nil {
		return nil, err
	}
	return news.copyMap(), nil
}

// del mirrors upstream resource_postgresql_role.go resourcePostgreSQLRoleDelete: one transaction on
// the provider's database (not on every database): lock the role, REASSIGN OWNED BY it TO the
// provider's user and DROP OWNED BY it (unless skipReassignOwned), then DROP ROLE (unless
// skipDropRole; no IF EXISTS: deleting a role that is already gone fails, as upstream). Objects the
// role owns in other databases are not touched, so DROP ROLE fails while such a database exists.
func (roleKind) del(ctx context.Context, p *pgProvider, id string, state props) error {
	name := state.str("name", id)
	p.mu.Lock()
	user := p.cfg.username
	p.mu.Unlock()
	stmts := []string{
		"SET statement_timeout = 0",
		fmt.Sprintf("SELECT pg_advisory_xact_lock(oid::bigint) FROM pg_roles WHERE rolname = %s", literal(name)),
	}
	if !state.boolean("skipReassignOwned", false) {
		stmts = append(stmts,
			fmt.Sprintf("REASSIGN OWNED BY %s TO %s", ident(name), ident(user)),
			fmt.Sprintf("DROP OWNED BY %s", ident(name)))
	}
	if !state.boolean("skipDropRole", false) {
		stmts = append(stmts, fmt.Sprintf("DROP ROLE %s", ident(name)))
	}
	return p.exec(ctx, "", stmts...)
}

// --------------------------------------------------------------------------------------- Database

type databaseKind struct{}

func (databaseKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("connectionLimit", vNum(-1))
	in.setDefault("allowConnections", vTrue)
	in.setDefault("isTemplate", vFalse)
	in.setDefault("alterObjectOwnership", vFalse)
	// As upstream resourcePostgreSQLDatabase: connection_limit validation.IntAtLeast(-1).
	return append(required(in, "name"), atLeast(in, "connectionLimit", "connection_limit", -1)...)
}

// atLeast is the Terraform SDK's validation.IntAtLeast, with its message, for a numeric input.
func atLeast(in props, key, tfName string, min int) []*pulumirpc.CheckFailure {
	v, ok := in[resource.PropertyKey(key)]
	if !ok || !v.IsNumber() || int(v.NumberValue()) >= min {
		return nil
	}
	return []*pulumirpc.CheckFailure{{Property: key,
		Reason: fmt.Sprintf("expected %s to be at least (%d), got %d", tfName, min, int(v.NumberValue()))}}
}

func (databaseKind) replaceKeys() map[string]bool {
	return keys("template", "encoding", "lcCollate", "lcCtype")
}

func (databaseKind) computed() []string {
	return []string{"owner", "template", "encoding", "lcCollate", "lcCtype", "tablespaceName"}
}

func (databaseKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	name := in.str("name", "")
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE DATABASE %s", ident(name))
	// As upstream resource_postgresql_database.go createDatabase: OWNER defaults to the provider's
	// user, TEMPLATE to template0 and ENCODING to 'UTF8'; "DEFAULT" is passed as the keyword.
	owner := in.str("owner", "")
	if owner == "" {
		p.mu.Lock()
		owner = p.cfg.username
		p.mu.Unlock()
	}
	fmt.Fprintf(&b, " OWNER %s", ident(owner))
	switch t := in.str("template", ""); {
	case strings.EqualFold(t, "DEFAULT"):
		b.WriteString(" TEMPLATE DEFAULT")
	case t != "":
		fmt.Fprintf(&b, " TEMPLATE %s", ident(t))
	default:
		b.WriteString(" TEMPLATE template0")
	}
	switch e := in.str("encoding", ""); {
	case strings.EqualFold(e, "DEFAULT"):
		b.WriteString(" ENCODING DEFAULT")
	case e != "":
		fmt.Fprintf(&b, " ENCODING %s", literal(e))
	default:
		b.WriteString(" ENCODING 'UTF8'")
	}
	if c := in.str("lcCollate", ""); c != "" && !strings.EqualFold(c, "DEFAULT") {
		fmt.Fprintf(&b, " LC_COLLATE %s", literal(c))
	}
	if c := in.str("lcCtype", ""); c != "" && !strings.EqualFold(c, "DEFAULT") {
		fmt.Fprintf(&b, " LC_CTYPE %s", literal(c))
	}
	if t := in.str("tablespaceName", ""); t != "" && !strings.EqualFold(t, "DEFAULT") {
		fmt.Fprintf(&b, " TABLESPACE %s", ident(t))
	}
	fmt.Fprintf(&b, " CONNECTION LIMIT %d ALLOW_CONNECTIONS %t IS_TEMPLATE %t",
		in.num("connectionLimit", -1), in.boolean("allowConnections", true), in.boolean("isTemplate", false))
	if err := p.execNoTx(ctx, "", b.String()); err != nil {
		return "", nil, err
	}
	outs, err := databaseKind{}.read(ctx, p, name, in)
	if err != nil {
		return "", nil, err
	}
	if outs == nil {
		return "", nil, fmt.Errorf("database %s was created but cannot be read back", name)
	}
	return name, outs, nil
}

func (databaseKind) read(ctx context.Context, p *pgProvider, id string, state props) (resource.PropertyMap, error) {
	var owner, encoding, collate, ctype, tablespace string
	var connlimit int
	var allowconn, istemplate bool
	found, err := p.queryRow(ctx, "", `SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
		d.datcollate, d.datctype, t.spcname, d.datconnlimit, d.datallowconn, d.datistemplate
		FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1`,
		[]any{id}, &owner, &encoding, &collate, &ctype, &tablespace, &connlimit, &allowconn, &istemplate)
	if err != nil || !found {
		return nil, err
	}
	out := state.copyMap()
	out["name"] = vStr(id)
	out["owner"] = vStr(owner)
	out["encoding"] = vStr(encoding)
	out["lcCollate"] = vStr(collate)
	out["lcCtype"] = vStr(ctype)
	out["tablespaceName"] = vStr(tablespace)
	out["connectionLimit"] = vNum(connlimit)
	out["allowConnections"] = resource.NewBoolProperty(allowconn)
	out["isTemplate"] = resource.NewBoolProperty(istemplate)
	if !state.has("template") {
		out["template"] = vStr("template0")
	}
	return out, nil
}

func (databaseKind) update(ctx context.Context, p *pgProvider, id string, olds, news props) (resource.PropertyMap, error) {
	name := news.str("name", id)
	var stmts []string
	if name != id {
		p.closePool(id)
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", ident(id), ident(name)))
	}
	db := ident(name)
	if o := news.str("owner", ""); o != "" && o != olds.str("owner", "") {
		if news.boolean("alterObjectOwnership", false) && olds.str("owner", "") != "" {
			if err := p.exec(ctx, id, fmt.Sprintf("REASSIGN OWNED BY %s TO %s",
				ident(olds.str("owner", "")), ident(o))); err != nil {
				return nil, err
			}
		}
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, ident(o)))
	}
	if t := news.str("tablespaceName", ""); t != "" && t != olds.str("tablespaceName", "") {
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SET TABLESPACE %s", db, ident(t)))
	}
	stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s WITH CONNECTION LIMIT %d ALLOW_CONNECTIONS %t IS_TEMPLATE %t",
		db, news.num("connectionLimit", -1), news.boolean("allowConnections", true), news.boolean("isTemplate", false)))
	if err := p.execNoTx(ctx, "", stmts...); err != nil {
		return nil, err
	}
	outs, err := databaseKind{}.read(ctx, p, name, news)
	if err != nil {
		return nil, err
	}
	if outs == nil {
		return nil, fmt.Errorf("database %s cannot be read back after the update", name)
	}
	return outs, nil
}

// del mirrors upstream resource_postgresql_database.go resourcePostgreSQLDatabaseDelete (PostgreSQL
// 13+): IS_TEMPLATE false for a template, block new connections, then DROP DATABASE … WITH (FORCE).
// No IF EXISTS: deleting a database that is already gone fails, as upstream.
func (databaseKind) del(ctx context.Context, p *pgProvider, id string, state props) error {
	p.closePool(id)
	var stmts []string
	if state.boolean("isTemplate", false) {
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s IS_TEMPLATE false", ident(id)))
	}
	stmts = append(stmts,
		fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS false", ident(id)),
		fmt.Sprintf("DROP DATABASE %s WITH (FORCE)", ident(id)))
	return p.execNoTx(ctx, "", stmts...)
}

// ------------------------------------------------------------------------------------------ Grant

type grantKind struct{}

var grantObjectTypes = []string{"database", "schema", "table", "sequence", "function", "procedure", "routine",
	"foreign_data_wrapper", "foreign_server", "column"}

func (grantKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("withGrantOption", vFalse)
	fails := required(in, "database", "role", "objectType")
	if v, ok := in["privileges"]; !ok || v.IsNull() {
		fails = append(fails, &pulumirpc.CheckFailure{Property: "privileges", Reason: "missing required property 'privileges'"})
	}
	ot := in.str("objectType", "")
	if ot != "" && !slices.Contains(grantObjectTypes, ot) {
		fails = append(fails, &pulumirpc.CheckFailure{Property: "objectType",
			Reason: "objectType must be one of " + strings.Join(grantObjectTypes, ", ")})
	}
	switch ot {
	case "column", "foreign_data_wrapper", "foreign_server":
		fails = append(fails, &pulumirpc.CheckFailure{Property: "objectType",
			Reason: "objectType " + ot + " is not supported by this locally built postgresql provider"})
	case "table", "sequence", "function", "procedure", "routine":
		if !in.has("schema") {
			fails = append(fails, &pulumirpc.CheckFailure{Property: "schema",
				Reason: "schema is required for objectType " + ot})
		}
	}
	return fails
}

// replaceKeys: every input but privileges is ForceNew upstream (resource_postgresql_grant.go
// resourcePostgreSQLGrant schema); privileges change in place (Update is the same revoke+grant
// as Create).
func (grantKind) replaceKeys() map[string]bool {
	return keys("database", "role", "objectType", "schema", "objects", "columns", "withGrantOption")
}

// deleteBeforeReplace: pulumi-postgresql provider/resources.go sets DeleteBeforeReplace for
// postgresql_grant, so a replaced grant is revoked before the new one is granted.
func (grantKind) deleteBeforeReplace() bool { return true }

// allowedPrivileges is upstream helpers.go allowedPrivileges: the privileges each object type
// accepts. Compared as upstream does: exactly, so lower case is refused too.
var allowedPrivileges = map[string][]string{
	"database":             {"ALL", "CREATE", "CONNECT", "TEMPORARY"},
	"table":                {"ALL", "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"},
	"sequence":             {"ALL", "USAGE", "SELECT", "UPDATE"},
	"schema":               {"ALL", "CREATE", "USAGE"},
	"function":             {"ALL", "EXECUTE"},
	"procedure":            {"ALL", "EXECUTE"},
	"routine":              {"ALL", "EXECUTE"},
	"type":                 {"ALL", "USAGE"},
	"foreign_data_wrapper": {"ALL", "USAGE"},
	"foreign_server":       {"ALL", "USAGE"},
	"column":               {"ALL", "SELECT", "INSERT", "UPDATE", "REFERENCES"},
}

// validatePrivileges mirrors upstream helpers.go validatePrivileges (called first thing in
// resourcePostgreSQLGrantCreate, which is also its Update): a privilege outside the list is refused
// with upstream's message before any statement runs, so no privilege string reaches the SQL
// unchecked.
func validatePrivileges(in props) error {
	ot := in.str("objectType", "")
	allowed, ok := allowedPrivileges[ot]
	if !ok {
		return fmt.Errorf("unknown object type %s", ot)
	}
	for _, priv := range in.strs("privileges") {
		if !slices.Contains(allowed, priv) {
			return fmt.Errorf("%s is not an allowed privilege for object type %s", priv, ot)
		}
	}
	return nil
}

func (grantKind) computed() []string { return nil }

// grantTarget is the "ON ..." part of GRANT/REVOKE.
func grantTarget(in props) string {
	ot := in.str("objectType", "")
	schema := in.str("schema", "")
	objects := in.strs("objects")
	plural := map[string]string{"table": "TABLES", "sequence": "SEQUENCES", "function": "FUNCTIONS",
		"procedure": "PROCEDURES", "routine": "ROUTINES"}
	switch ot {
	case "database":
		return "DATABASE " + ident(in.str("database", ""))
	case "schema":
		return "SCHEMA " + ident(schema)
	default:
		if len(objects) == 0 {
			return fmt.Sprintf("ALL %s IN SCHEMA %s", plural[ot], ident(schema))
		}
		q := make([]string, 0, len(objects))
		for _, o := range objects {
			if ot == "function" || ot == "procedure" || ot == "routine" {
				// As upstream helpers.go quoteIdentifyIdent: the name before "(" is quoted, the
				// argument types after it are passed as written.
				name, args, hasArgs := strings.Cut(o, "(")
				if hasArgs {
					args = "(" + args
				}
				q = append(q, ident(schema)+"."+ident(name)+args)
			} else {
				q = append(q, ident(schema)+"."+ident(o))
			}
		}
		return strings.ToUpper(ot) + " " + strings.Join(q, ", ")
	}
}

func grantID(in props) string {
	parts := []string{in.str("role", ""), in.str("database", "")}
	if s := in.str("schema", ""); s != "" {
		parts = append(parts, s)
	}
	parts = append(parts, in.str("objectType", ""))
	if o := in.strs("objects"); len(o) > 0 {
		parts = append(parts, strings.Join(o, ","))
	}
	return strings.Join(parts, "_")
}

func grantStatements(in props) []string {
	target := grantTarget(in)
	role := roleIdent(in.str("role", ""))
	stmts := []string{fmt.Sprintf("REVOKE ALL PRIVILEGES ON %s FROM %s", target, role)}
	privs := in.strs("privileges")
	if len(privs) > 0 {
		s := fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(privs, ","), target, role)
		if in.boolean("withGrantOption", false) {
			s += " WITH GRANT OPTION"
		}
		stmts = append(stmts, s)
	}
	return stmts
}

// grantDatabase is the database to run a grant's statements in (database grants: the provider's).
func grantDatabase(in props) string {
	if in.str("objectType", "") == "database" {
		return ""
	}
	return in.str("database", "")
}

func (grantKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	if err := validatePrivileges(in); err != nil {
		return "", nil, err
	}
	if err := p.exec(ctx, grantDatabase(in), grantStatements(in)...); err != nil {
		return "", nil, err
	}
	return grantID(in), in.copyMap(), nil
}

// read mirrors upstream resource_postgresql_grant.go resourcePostgreSQLGrantRead:
// checkRoleDBSchemaExists first (a missing role, except PUBLIC, a missing database or, for
// non-database grants, a missing schema: the grant leaves the state), then the privileges the
// role holds directly on the object, from aclexplode(datacl) / aclexplode(nspacl) WITHOUT
// acldefault: a NULL ACL (the default, e.g. after a hand-made reset) reads as no privileges, so a
// PUBLIC grant of [] shows no drift although PUBLIC may CONNECT again. Other object types keep
// their recorded privileges (not read by this provider).
func (grantKind) read(ctx context.Context, p *pgProvider, _ string, state props) (resource.PropertyMap, error) {
	role, db, ot := state.str("role", ""), state.str("database", ""), state.str("objectType", "")
	var one int
	if role != "public" {
		found, err := p.queryRow(ctx, "", `SELECT 1 FROM pg_roles WHERE rolname = $1`, []any{role}, &one)
		if err != nil || !found {
			return nil, err
		}
	}
	found, err := p.queryRow(ctx, "", `SELECT 1 FROM pg_database WHERE datname = $1`, []any{db}, &one)
	if err != nil || !found {
		return nil, err
	}
	if ot != "database" {
		found, err := p.queryRow(ctx, db, `SELECT 1 FROM pg_namespace WHERE nspname = $1`,
			[]any{state.str("schema", "")}, &one)
		if err != nil || !found {
			return nil, err
		}
	}
	var q, arg string
	switch ot {
	case "database":
		q = `SELECT COALESCE(array_agg(privilege_type::text), '{}') FROM (SELECT (aclexplode(datacl)).* FROM pg_database
			WHERE datname = $1) AS privileges WHERE grantee = $2`
		arg = db
	case "schema":
		q = `SELECT COALESCE(array_agg(privilege_type::text), '{}') FROM (SELECT (aclexplode(nspacl)).* FROM pg_namespace
			WHERE nspname = $1) AS privileges WHERE grantee = $2`
		arg = state.str("schema", "")
	default:
		return state.copyMap(), nil
	}
	var oid uint32 // upstream helpers.go getRoleOID: 0 for public
	if role != "public" {
		if _, err := p.queryRow(ctx, "", `SELECT oid FROM pg_roles WHERE rolname = $1`, []any{role}, &oid); err != nil {
			return nil, err
		}
	}
	var privs []string
	if _, err := p.queryRow(ctx, grantDatabase(state), q, []any{arg, oid}, &privs); err != nil {
		return nil, err
	}
	out := state.copyMap()
	if !samePrivileges(privs, state.strs("privileges"), ot) {
		sort.Strings(privs)
		out["privileges"] = strArray(privs)
	}
	return out, nil
}

// samePrivileges is upstream helpers.go resourcePrivilegesEqual: equal as sets, or the wanted
// set holds ALL and the granted one is every privilege of the object type.
func samePrivileges(granted, wanted []string, ot string) bool {
	set := func(ss []string) []string {
		c := slices.Clone(ss)
		sort.Strings(c)
		return slices.Compact(c)
	}
	g, w := set(granted), set(wanted)
	if slices.Equal(g, w) {
		return true
	}
	if !slices.Contains(w, "ALL") {
		return false
	}
	var implicit []string
	for _, pr := range allowedPrivileges[ot] {
		if pr != "ALL" {
			implicit = append(implicit, pr)
		}
	}
	return slices.Equal(g, set(implicit))
}

// update is upstream's Update = resourcePostgreSQLGrantCreate: validate, REVOKE ALL, GRANT.
func (grantKind) update(ctx context.Context, p *pgProvider, _ string, _, news props) (resource.PropertyMap, error) {
	if err := validatePrivileges(news); err != nil {
		return nil, err
	}
	if err := p.exec(ctx, grantDatabase(news), grantStatements(news)...); err != nil {
		return nil, err
	}
	return news.copyMap(), nil
}

func (grantKind) del(ctx context.Context, p *pgProvider, _ string, state props) error {
	return p.exec(ctx, grantDatabase(state), fmt.Sprintf("REVOKE ALL PRIVILEGES ON %s FROM %s",
		grantTarget(state), roleIdent(state.str("role", ""))))
}

// -------------------------------------------------------------------------------------- GrantRole

type grantRoleKind struct{}

func (grantRoleKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("withAdminOption", vFalse)
	return required(in, "role", "grantRole")
}

func (grantRoleKind) replaceKeys() map[string]bool {
	return keys("role", "grantRole", "withAdminOption")
}
func (grantRoleKind) computed() []string { return nil }

func (grantRoleKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	s := fmt.Sprintf("GRANT %s TO %s", ident(in.str("grantRole", "")), ident(in.str("role", "")))
	if in.boolean("withAdminOption", false) {
		s += " WITH ADMIN OPTION"
	}
	if err := p.exec(ctx, "", s); err != nil {
		return "", nil, err
	}
	id := fmt.Sprintf("%s_%s_%t", in.str("role", ""), in.str("grantRole", ""), in.boolean("withAdminOption", false))
	return id, in.copyMap(), nil
}

func (grantRoleKind) read(ctx context.Context, p *pgProvider, _ string, state props) (resource.PropertyMap, error) {
	var one int
	found, err := p.queryRow(ctx, "", `SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 AND g.rolname = $2`,
		[]any{state.str("role", ""), state.str("grantRole", "")}, &one)
	if err != nil || !found {
		return nil, err
	}
	return state.copyMap(), nil
}

func (grantRoleKind) update(_ context.Context, _ *pgProvider, _ string, _, news props) (resource.PropertyMap, error) {
	return news.copyMap(), nil
}

func (grantRoleKind) del(ctx context.Context, p *pgProvider, _ string, state props) error {
	return p.exec(ctx, "", fmt.Sprintf("REVOKE %s FROM %s", ident(state.str("grantRole", "")), ident(state.str("role", ""))))
}

// -------------------------------------------------------------------------------------- Extension

type extensionKind struct{}

func (extensionKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("dropCascade", vFalse)
	in.setDefault("createCascade", vFalse)
	return required(in, "name")
}

func (extensionKind) replaceKeys() map[string]bool { return keys("name", "database") }
func (extensionKind) computed() []string           { return []string{"schema", "version", "database"} }

func (extensionKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	name := in.str("name", "")
	s := "CREATE EXTENSION IF NOT EXISTS " + ident(name)
	if sc := in.str("schema", ""); sc != "" {
		s += " SCHEMA " + ident(sc)
	}
	if v := in.str("version", ""); v != "" {
		s += " VERSION " + literal(v)
	}
	if in.boolean("createCascade", false) {
		s += " CASCADE"
	}
	db := in.str("database", "")
	if err := p.exec(ctx, db, s); err != nil {
		return "", nil, err
	}
	outs, err := extensionKind{}.read(ctx, p, name, in)
	if err != nil {
		return "", nil, err
	}
	if outs == nil {
		return "", nil, fmt.Errorf("extension %s was created but cannot be read back", name)
	}
	if db == "" {
		p.mu.Lock()
		db = p.cfg.database
		p.mu.Unlock()
	}
	return db + "." + name, outs, nil
}

// read mirrors upstream resource_postgresql_extension.go resourcePostgreSQLExtensionExists (a
// missing database: gone) and resourcePostgreSQLExtensionReadImpl (schema and version read back; a
// missing extension: gone).
func (extensionKind) read(ctx context.Context, p *pgProvider, _ string, state props) (resource.PropertyMap, error) {
	var schema, ver string
	db := state.str("database", "")
	if db != "" {
		var one int
		found, err := p.queryRow(ctx, "", `SELECT 1 FROM pg_database WHERE datname = $1`, []any{db}, &one)
		if err != nil || !found {
			return nil, err
		}
	}
	found, err := p.queryRow(ctx, db, `SELECT n.nspname, e.extversion FROM pg_extension e
		JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1`,
		[]any{state.str("name", "")}, &schema, &ver)
	if err != nil || !found {
		return nil, err
	}
	out := state.copyMap()
	out["schema"] = vStr(schema)
	out["version"] = vStr(ver)
	if db == "" {
		var cur string
		if _, err := p.queryRow(ctx, db, "SELECT current_database()", nil, &cur); err != nil {
			return nil, err
		}
		out["database"] = vStr(cur)
	}
	return out, nil
}

func (extensionKind) update(ctx context.Context, p *pgProvider, id string, olds, news props) (resource.PropertyMap, error) {
	name := news.str("name", "")
	var stmts []string
	if s := news.str("schema", ""); s != "" && s != olds.str("schema", "") {
		stmts = append(stmts, fmt.Sprintf("ALTER EXTENSION %s SET SCHEMA %s", ident(name), ident(s)))
	}
	if v := news.str("version", ""); v != "" && v != olds.str("version", "") {
		stmts = append(stmts, fmt.Sprintf("ALTER EXTENSION %s UPDATE TO %s", ident(name), literal(v)))
	}
	if len(stmts) > 0 {
		if err := p.exec(ctx, news.str("database", ""), stmts...); err != nil {
			return nil, err
		}
	}
	outs, err := extensionKind{}.read(ctx, p, id, news)
	if err != nil {
		return nil, err
	}
	if outs == nil {
		return nil, fmt.Errorf("extension %s cannot be read back after the update", name)
	}
	return outs, nil
}

// del mirrors upstream resource_postgresql_extension.go resourcePostgreSQLExtensionDelete:
// DROP EXTENSION <name> RESTRICT (CASCADE only with dropCascade), no IF EXISTS. RESTRICT fails
// while a table column uses a type of the extension (e.g. citext), so deleting an app whose tables
// use one fails at the extension, before its database is dropped, unless dropCascade is set.
func (extensionKind) del(ctx context.Context, p *pgProvider, _ string, state props) error {
	mode := "RESTRICT"
	if state.boolean("dropCascade", false) {
		mode = "CASCADE"
	}
	return p.exec(ctx, state.str("database", ""), fmt.Sprintf("DROP EXTENSION %s %s", ident(state.str("name", "")), mode))
}

// ----------------------------------------------------------------------------------------- Schema

type schemaKind struct{}

func (schemaKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("ifNotExists", vTrue)
	in.setDefault("dropCascade", vFalse)
	fails := required(in, "name")
	if in.has("policies") && len(in.strs("policies")) > 0 {
		fails = append(fails, &pulumirpc.CheckFailure{Property: "policies",
			Reason: "policies (deprecated upstream) is not supported by this locally built postgresql provider: use Grant"})
	}
	return fails
}

func (schemaKind) replaceKeys() map[string]bool { return keys("database") }
func (schemaKind) computed() []string           { return []string{"owner", "database"} }

func (schemaKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	name := in.str("name", "")
	s := "CREATE SCHEMA "
	if in.boolean("ifNotExists", true) {
		s += "IF NOT EXISTS "
	}
	s += ident(name)
	if o := in.str("owner", ""); o != "" {
		s += " AUTHORIZATION " + ident(o)
	}
	db := in.str("database", "")
	if err := p.exec(ctx, db, s); err != nil {
		return "", nil, err
	}
	outs, err := schemaKind{}.read(ctx, p, "", in)
	if err != nil {
		return "", nil, err
	}
	if outs == nil {
		return "", nil, fmt.Errorf("schema %s was created but cannot be read back", name)
	}
	return outs["database"].StringValue() + "." + name, outs, nil
}

func (schemaKind) read(ctx context.Context, p *pgProvider, _ string, state props) (resource.PropertyMap, error) {
	var owner, cur string
	db := state.str("database", "")
	found, err := p.queryRow(ctx, db, `SELECT pg_get_userbyid(nspowner), current_database() FROM pg_namespace
		WHERE nspname = $1`, []any{state.str("name", "")}, &owner, &cur)
	if err != nil || !found {
		return nil, err
	}
	out := state.copyMap()
	out["owner"] = vStr(owner)
	out["database"] = vStr(cur)
	return out, nil
}

func (schemaKind) update(ctx context.Context, p *pgProvider, _ string, olds, news props) (resource.PropertyMap, error) {
	oldName, name := olds.str("name", ""), news.str("name", "")
	var stmts []string
	if oldName != name {
		stmts = append(stmts, fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", ident(oldName), ident(name)))
	}
	if o := news.str("owner", ""); o != "" && o != olds.str("owner", "") {
		stmts = append(stmts, fmt.Sprintf("ALTER SCHEMA %s OWNER TO %s", ident(name), ident(o)))
	}
	if len(stmts) > 0 {
		if err := p.exec(ctx, news.str("database", ""), stmts...); err != nil {
			return nil, err
		}
	}
	outs, err := schemaKind{}.read(ctx, p, "", news)
	if err != nil {
		return nil, err
	}
	if outs == nil {
		return nil, fmt.Errorf("schema %s cannot be read back after the update", name)
	}
	return outs, nil
}

func (schemaKind) del(ctx context.Context, p *pgProvider, _ string, state props) error {
	s := "DROP SCHEMA IF EXISTS " + ident(state.str("name", ""))
	if state.boolean("dropCascade", false) {
		s += " CASCADE"
	}
	return p.exec(ctx, state.str("database", ""), s)
}

// ------------------------------------------------------------------------------ DefaultPrivileges

type defaultPrivilegesKind struct{}

func (defaultPrivilegesKind) check(in props) []*pulumirpc.CheckFailure {
	in.setDefault("withGrantOption", vFalse)
	fails := required(in, "database", "role", "owner", "objectType")
	ot := in.str("objectType", "")
	if ot != "" && !slices.Contains([]string{"table", "sequence", "function", "type", "schema"}, ot) {
		fails = append(fails, &pulumirpc.CheckFailure{Property: "objectType",
			Reason: "objectType must be one of table, sequence, function, type, schema"})
	}
	return fails
}

func (defaultPrivilegesKind) replaceKeys() map[string]bool {
	return keys("database", "role", "owner", "schema", "objectType", "privileges", "withGrantOption")
}
func (defaultPrivilegesKind) computed() []string { return nil }

func defaultPrivilegesPrefix(in props) string {
	s := "ALTER DEFAULT PRIVILEGES FOR ROLE " + ident(in.str("owner", ""))
	if sc := in.str("schema", ""); sc != "" {
		s += " IN SCHEMA " + ident(sc)
	}
	return s
}

func defaultPrivilegesObjects(in props) string {
	return strings.ToUpper(in.str("objectType", "")) + "S"
}

func (defaultPrivilegesKind) create(ctx context.Context, p *pgProvider, in props) (string, resource.PropertyMap, error) {
	prefix, objs, role := defaultPrivilegesPrefix(in), defaultPrivilegesObjects(in), roleIdent(in.str("role", ""))
	stmts := []string{fmt.Sprintf("%s REVOKE ALL ON %s FROM %s", prefix, objs, role)}
	if privs := in.strs("privileges"); len(privs) > 0 {
		s := fmt.Sprintf("%s GRANT %s ON %s TO %s", prefix, strings.ToUpper(strings.Join(privs, ", ")), objs, role)
		if in.boolean("withGrantOption", false) {
			s += " WITH GRANT OPTION"
		}
		stmts = append(stmts, s)
	}
	if err := p.exec(ctx, in.str("database", ""), stmts...); err != nil {
		return "", nil, err
	}
	id := strings.Join([]string{in.str("role", ""), in.str("database", ""), in.str("schema", ""),
		in.str("owner", ""), in.str("objectType", "")}, "_")
	return id, in.copyMap(), nil
}

func (defaultPrivilegesKind) read(_ context.Context, _ *pgProvider, _ string, state props) (resource.PropertyMap, error) {
	return state.copyMap(), nil
}

func (defaultPrivilegesKind) update(_ context.Context, _ *pgProvider, _ string, _, news props) (resource.PropertyMap, error) {
	return news.copyMap(), nil
}

func (defaultPrivilegesKind) del(ctx context.Context, p *pgProvider, _ string, state props) error {
	return p.exec(ctx, state.str("database", ""), fmt.Sprintf("%s REVOKE ALL ON %s FROM %s",
		defaultPrivilegesPrefix(state), defaultPrivilegesObjects(state), roleIdent(state.str("role", ""))))
}
