package scramverifier

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// Iterations is the PBKDF2 iteration count used for new verifiers, PostgreSQL's default.
const Iterations = 4096

// ErrMalformed is returned by Parse for text that is not a SCRAM-SHA-256 verifier.
var ErrMalformed = errors.New("malformed SCRAM-SHA-256 verifier")

// Make returns a verifier for password with a fresh random salt and
// PostgreSQL's default iteration count.
func Make(password string) (string, error) { return MakeIterations(password, Iterations) }

// MakeIterations is Make with a chosen PBKDF2 iteration count. Iterations only
// slow down guessing a weak password; for a long random machine-made password
// a low count costs no security and makes every connection cheaper.
func MakeIterations(password string, iterations int) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("making salt: %w", err)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return "", fmt.Errorf("preparing password: %w", err)
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	if err != nil {
		return "", fmt.Errorf("deriving keys: %w", err)
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt),
		enc(creds.StoredKey), enc(creds.ServerKey)), nil
}

// Parse reads a verifier made by Make or by PostgreSQL.
func Parse(v string) (scram.StoredCredentials, error) {
	var sc scram.StoredCredentials
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return sc, ErrMalformed
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return sc, ErrMalformed
	}
	iterText, saltText, ok1 := strings.Cut(factors, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return sc, ErrMalformed
	}
	iters, err := strconv.Atoi(iterText)
	if err != nil || iters < 1 {
		return sc, ErrMalformed
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltText)
	stored, err2 := dec(storedText)
	server, err3 := dec(serverText)
	if err1 != nil || err2 != nil || err3 != nil || len(stored) != 32 || len(server) != 32 {
		return sc, ErrMalformed
	}
	sc.KeyFactors = scram.KeyFactors{Salt: string(salt), Iters: iters}
	sc.StoredKey, sc.ServerKey = stored, server
	return sc, nil
}
