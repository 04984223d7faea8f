package main

import (
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // PostgreSQL's md5 verifier format, checked, never produced
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// passwordMatches reports whether password is the one behind a pg_authid.rolpassword verifier:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> or md5<md5(password || role)>.
// An unknown format counts as a match (no drift is reported that cannot be proven).
func passwordMatches(verifier, role, password string) bool {
	switch {
	case strings.HasPrefix(verifier, "SCRAM-SHA-256$"):
		return scramMatches(strings.TrimPrefix(verifier, "SCRAM-SHA-256$"), password)
	case strings.HasPrefix(verifier, "md5") && len(verifier) == 35:
		sum := md5.Sum([]byte(password + role)) //nolint:gosec // see import
		return subtle.ConstantTimeCompare([]byte(verifier[3:]), []byte(hex.EncodeToString(sum[:]))) == 1
	default:
		return true
	}
}

func scramMatches(rest, password string) bool {
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return true
	}
	iterText, saltText, ok1 := strings.Cut(iterSalt, ":")
	storedText, _, ok2 := strings.Cut(keys, ":")
	iterations, err1 := strconv.Atoi(iterText)
	salt, err2 := base64.StdEncoding.DecodeString(saltText)
	stored, err3 := base64.StdEncoding.DecodeString(storedText)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || err3 != nil || iterations <= 0 {
		return true
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return true
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	storedKey := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(storedKey[:], stored) == 1
}
