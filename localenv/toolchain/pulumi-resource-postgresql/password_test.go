package main

import "testing"

// Verifiers produced by PostgreSQL 15 for role "app" (SET password_encryption; CREATE ROLE ... PASSWORD).
func TestPasswordMatches(t *testing.T) {
	const scramVerifier = "SCRAM-SHA-256$4096:zWoBGR1X/R5aGaXixdMNHw==$CajimSeG0rbUeVSjtaKHIiBR9Qpcek1T25kTYFUf1As=:0pBy25uvGC3NFCFnI+TtKKul2wd56Pr/X/NQh9YkHiQ="
	const md5Verifier = "md5" + "6a422f785c9e20873908ce25d1736ae2" // md5("secret" + "app")
	cases := []struct {
		name, verifier, password string
		want                     bool
	}{
		{"scram right", scramVerifier, "secret", true},
		{"scram wrong", scramVerifier, "secret2", false},
		{"md5 right", md5Verifier, "secret", true},
		{"md5 wrong", md5Verifier, "other", false},
		{"unknown format is not drift", "plain-text", "x", true},
		{"malformed scram is not drift", "SCRAM-SHA-256$bad", "x", true},
	}
	for _, c := range cases {
		if got := passwordMatches(c.verifier, "app", c.password); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
