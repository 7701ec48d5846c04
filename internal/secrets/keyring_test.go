package secrets

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	k1, _ := NewKeyText("k1")
	k2, _ := NewKeyText("k2")
	old, err := Parse(k1)
	if err != nil {
		t.Fatal(err)
	}
	id, ct, err := old.Seal([]byte("pw"), []byte("tenant-a"))
	if err != nil || id != "k1" {
		t.Fatalf("seal: %v %v", id, err)
	}
	if bytes.Contains(ct, []byte("pw")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	rotated, err := Parse(k2 + "," + k1)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ActiveID() != "k2" {
		t.Fatalf("active %q, want k2", rotated.ActiveID())
	}
	pt, err := rotated.Open(id, ct, []byte("tenant-a"))
	if err != nil || string(pt) != "pw" {
		t.Fatalf("open after rotation: %q %v", pt, err)
	}
	if _, err := rotated.Open(id, ct, []byte("tenant-b")); err == nil {
		t.Fatal("opened with the wrong context")
	}
	if _, err := old.Open("k9", ct, nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "k1", "k1:short", "bad id:AAAA", "k1:!!!"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	k, _ := NewKeyText("k1")
	if _, err := Parse(k + "," + k); err == nil {
		t.Error("duplicate id accepted")
	}
}
