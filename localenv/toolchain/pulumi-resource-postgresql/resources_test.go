package main

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func pm(kv map[string]any) props {
	return props(resource.NewPropertyMapFromMap(kv))
}

func TestGrantTarget(t *testing.T) {
	cases := []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{"objectType": "database", "database": "app"}, `DATABASE "app"`},
		{map[string]any{"objectType": "schema", "database": "app", "schema": "s"}, `SCHEMA "s"`},
		{map[string]any{"objectType": "table", "database": "app", "schema": "public"}, `ALL TABLES IN SCHEMA "public"`},
		{map[string]any{"objectType": "table", "database": "app", "schema": "public", "objects": []any{"a", "b"}},
			`TABLE "public"."a", "public"."b"`},
		// helpers.go quoteIdentifyIdent: the function name is quoted, its argument types are not.
		{map[string]any{"objectType": "function", "database": "app", "schema": "public",
			"objects": []any{`f(integer)`, `g"; DROP TABLE x; --`}},
			`FUNCTION "public"."f"(integer), "public"."g""; DROP TABLE x; --"`},
	}
	for _, c := range cases {
		if got := grantTarget(pm(c.in)); got != c.want {
			t.Errorf("grantTarget(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestGrantStatementsRevokePublic(t *testing.T) {
	got := grantStatements(pm(map[string]any{"objectType": "database", "database": "app", "role": "public",
		"privileges": []any{}}))
	if len(got) != 1 || got[0] != `REVOKE ALL PRIVILEGES ON DATABASE "app" FROM PUBLIC` {
		t.Fatalf("got %q", got)
	}
	got = grantStatements(pm(map[string]any{"objectType": "database", "database": "app", "role": "app",
		"privileges": []any{"CONNECT", "TEMPORARY"}, "withGrantOption": true}))
	if len(got) != 2 || got[1] != `GRANT CONNECT,TEMPORARY ON DATABASE "app" TO "app" WITH GRANT OPTION` {
		t.Fatalf("got %q", got)
	}
}

func TestRoleOptionsQuoteAndRedact(t *testing.T) {
	in := pm(map[string]any{"login": true, "connectionLimit": 20.0, "password": "it's-secret"})
	roleKind{}.check(in)
	opts := roleOptions(in, true)
	for _, want := range []string{"LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "INHERIT", "NOREPLICATION",
		"NOBYPASSRLS", "CONNECTION LIMIT 20", "VALID UNTIL 'infinity'", "PASSWORD 'it''s-secret'"} {
		if !strings.Contains(opts, want) {
			t.Errorf("%q lacks %q", opts, want)
		}
	}
	stmt := `CREATE ROLE "x" WITH ` + opts
	if r := redact(stmt); strings.Contains(r, "secret") {
		t.Errorf("redact leaks the password: %s", r)
	}
}

func TestIdentQuoting(t *testing.T) {
	if got := ident(`we"ird`); got != `"we""ird"` {
		t.Errorf("ident = %s", got)
	}
	if got := roleIdent("PUBLIC"); got != "PUBLIC" {
		t.Errorf("roleIdent(PUBLIC) = %s", got)
	}
	if got := literal("a'b"); got != "'a''b'" {
		t.Errorf("literal = %s", got)
	}
}

func TestParseConnConfigJSONEncodedValues(t *testing.T) {
	c, err := parseConnConfig(resource.NewPropertyMapFromMap(map[string]any{
		"host": "127.0.0.1", "port": "15432", "superuser": "false", "sslmode": "disable", "connectTimeout": "5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 15432 || c.superuser || c.sslmode != "disable" || c.connectTimeout != 5 || c.database != "postgres" {
		t.Fatalf("unexpected config %+v", c)
	}
	if _, err := parseConnConfig(resource.NewPropertyMapFromMap(map[string]any{"port": "abc"})); err == nil {
		t.Fatal("expected an error for a non-numeric port")
	}
}

// Mirrors the validation.IntAtLeast validators of upstream resourcePostgreSQLRole and
// resourcePostgreSQLDatabase (connection_limit >= -1, statement_timeout >= 0).
func TestCheckIntAtLeast(t *testing.T) {
	fails := roleKind{}.check(pm(map[string]any{"name": "r", "connectionLimit": -2.0, "statementTimeout": -1.0}))
	if len(fails) != 2 || fails[0].GetReason() != "expected connection_limit to be at least (-1), got -2" {
		t.Fatalf("role: %v", fails)
	}
	if fails := (databaseKind{}).check(pm(map[string]any{"name": "d", "connectionLimit": -1.0})); len(fails) != 0 {
		t.Fatalf("database -1 refused: %v", fails)
	}
	if fails := (databaseKind{}).check(pm(map[string]any{"name": "d", "connectionLimit": -3.0})); len(fails) != 1 {
		t.Fatalf("database -3 accepted: %v", fails)
	}
}
