package main

// A real, throw-away PostgreSQL 15 for the tests, started in TestMain the way
// tests/integration/pg_server.py does it: initdb + pg_ctl from /usr/local/bin (PG_BIN overrides),
// as the unprivileged OS user pgapps-test when run as root (runuser), on a free loopback port,
// scram-sha-256 for every connection. A server that cannot be started FAILS the run (exit 1): the
// tests never skip.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type testServer struct {
	bin, root, data, osUser, password string
	port                              int
}

var srv *testServer

func TestMain(m *testing.M) {
	s, err := startTestServer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: could not start the test PostgreSQL server: %v\n", err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	s.stop()
	os.Exit(code)
}

func (s *testServer) cmd(argv ...string) *exec.Cmd {
	if s.osUser != "" {
		argv = append([]string{"runuser", "-u", s.osUser, "--"}, argv...)
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append(os.Environ(), "LC_ALL=C")
	c.Dir = s.root
	return c
}

func startTestServer() (*testServer, error) {
	bin := os.Getenv("PG_BIN")
	if bin == "" {
		bin = "/usr/local/bin"
	}
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("PostgreSQL binary %s missing in %s (set PG_BIN)", b, bin)
		}
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "pgplugin-test-")
	if err != nil {
		return nil, err
	}
	s := &testServer{bin: bin, root: root, data: filepath.Join(root, "data"), password: hex.EncodeToString(pw)}
	if os.Geteuid() == 0 {
		s.osUser = "pgapps-test"
		if _, err := user.Lookup(s.osUser); err != nil {
			if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
				s.osUser).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("useradd %s: %v: %s", s.osUser, err, out)
			}
		}
		u, err := user.Lookup(s.osUser)
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(root, uid, gid); err != nil {
			return nil, err
		}
		defer func() { _ = os.Chown(filepath.Join(root, "pwfile"), uid, gid) }()
	}
	pwfile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.osUser != "" {
		u, _ := user.Lookup(s.osUser)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(pwfile, uid, gid)
	}
	// SQL_ASCII, not UTF8: so a database created without ENCODING 'UTF8' would show (upstream
	// createDatabase always sends ENCODING 'UTF8' when none is given).
	if out, err := s.cmd(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "--pwfile="+pwfile,
		"--auth=scram-sha-256", "--encoding=SQL_ASCII", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		s.stop()
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	_ = os.Remove(pwfile)
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		opts := fmt.Sprintf("-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off "+
			"-c max_connections=60", s.port, root)
		out, err := s.cmd(filepath.Join(bin, "pg_ctl"), "start", "-w", "-t", "30", "-D", s.data,
			"-l", filepath.Join(root, "log"), "-o", opts).CombinedOutput()
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(root, "log"))
			s.stop()
			return nil, fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
		}
	}
	return nil, fmt.Errorf("unreachable")
}

func (s *testServer) stop() {
	_ = s.cmd(filepath.Join(s.bin, "pg_ctl"), "stop", "-w", "-t", "20", "-m", "immediate", "-D", s.data).Run()
	_ = os.RemoveAll(s.root)
}

// connect opens a connection as user (the superuser unless told) to database db.
func (s *testServer) connect(t *testing.T, db, usr, password string) (*pgx.Conn, error) {
	t.Helper()
	if usr == "" {
		usr, password = "postgres", s.password
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s sslmode=disable", s.port, db))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = usr, password
	return pgx.ConnectConfig(ctx, cfg)
}

// admin runs statements as the superuser on db, failing the test on error.
func (s *testServer) admin(t *testing.T, db string, stmts ...string) {
	t.Helper()
	c, err := s.connect(t, db, "", "")
	if err != nil {
		t.Fatalf("connect %s: %v", db, err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	for _, st := range stmts {
		if _, err := c.Exec(context.Background(), st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
}

// scan runs one query as the superuser on db and scans its single row.
func (s *testServer) scan(t *testing.T, db, q string, args []any, dest ...any) bool {
	t.Helper()
	c, err := s.connect(t, db, "", "")
	if err != nil {
		t.Fatalf("connect %s: %v", db, err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	err = c.QueryRow(context.Background(), q, args...).Scan(dest...)
	if err == pgx.ErrNoRows {
		return false
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return true
}
