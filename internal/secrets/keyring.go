package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrUnknownKey is returned by Open for a ciphertext sealed under a key the ring lacks.
var ErrUnknownKey = errors.New("unknown encryption key id")

// Keyring holds named 32-byte keys; the first one parsed seals new secrets.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
	// first is the raw active key, for Derive.
	first []byte
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// Parse reads a keyring from text of the form "id1:base64key1,id2:base64key2".
// Each key must decode to exactly 32 bytes. The first key is the active one.
func Parse(text string) (*Keyring, error) {
	kr := &Keyring{aeads: map[string]cipher.AEAD{}}
	for _, part := range strings.Split(strings.TrimSpace(text), ",") {
		id, enc, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("keyring entry %q: want id:base64-key with an id of letters, digits, _ . -", redact(part))
		}
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("keyring entry %q: key must be 32 bytes, base64 encoded", id)
		}
		if _, dup := kr.aeads[id]; dup {
			return nil, fmt.Errorf("keyring: key id %q given twice", id)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("keyring entry %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keyring entry %q: %w", id, err)
		}
		kr.aeads[id] = aead
		if kr.active == "" {
			kr.active, kr.first = id, key
		}
	}
	return kr, nil
}

// NewKeyText returns keyring text holding one fresh random key named id.
func NewKeyText(id string) (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("making key: %w", err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}

func redact(part string) string {
	id, _, _ := strings.Cut(strings.TrimSpace(part), ":")
	return id + ":…"
}

// Derive returns a 32-byte sub-key of the active key for one purpose, named
// by label (HMAC-SHA256 of the label under the key): the same keyring text
// gives every replica, and every restart, the same sub-key, and a sub-key
// tells nothing of the key or of another label's sub-key. It changes when
// the active key does (a rotation).
func (k *Keyring) Derive(label string) []byte {
	m := hmac.New(sha256.New, k.first)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// ActiveID is the id of the key that Seal uses.
func (k *Keyring) ActiveID() string { return k.active }

// Seal encrypts plaintext under the active key; aad binds the ciphertext to its
// context (a tenant id, say) so it cannot be swapped onto another row.
func (k *Keyring) Seal(plaintext, aad []byte) (keyID string, ciphertext []byte, err error) {
	aead := k.aeads[k.active]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("making nonce: %w", err)
	}
	return k.active, aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal produced.
func (k *Keyring) Open(keyID string, ciphertext, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	ns := aead.NonceSize()
	if len(ciphertext) < ns {
		return nil, errors.New("opening secret: ciphertext too short")
	}
	pt, err := aead.Open(nil, ciphertext[:ns], ciphertext[ns:], aad)
	if err != nil {
		return nil, fmt.Errorf("opening secret: %w", err)
	}
	return pt, nil
}
