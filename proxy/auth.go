package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

const (
	mechSCRAM     = "SCRAM-SHA-256"
	mechSCRAMPlus = "SCRAM-SHA-256-PLUS"
)

// findUser picks the proxy user a startup "user" names: the name itself when
// it is a proxy user, else, for "name.tenant", the user "name" with the tenant
// "tenant" as a suffix. It returns a nil user (and no error) when neither exists,
// so that authentication can fail the same way as for a wrong password.
func (ss *session) findUser(ctx context.Context, name string) (u *catalog.User, tenantSuffix string, err error) {
	u, err = ss.srv.backends.User(ctx, name)
	if err == nil {
		return u, "", nil
	}
	if !errors.Is(err, catalog.ErrNotFound) {
		return nil, "", err
	}
	for i := len(name) - 1; i > 0; i-- {
		if name[i] != '.' {
			continue
		}
		u, err = ss.srv.backends.User(ctx, name[:i])
		if err == nil {
			return u, name[i+1:], nil
		}
		if !errors.Is(err, catalog.ErrNotFound) {
			return nil, "", err
		}
		break
	}
	return nil, "", nil
}

// authenticate runs SCRAM-SHA-256 (with channel binding, -PLUS, over TLS) against
// the user's verifier. For an unknown user it runs the same exchange against
// mock credentials (mockCredentials), so a client cannot tell unknown users
// from wrong passwords.
func (ss *session) authenticate(u *catalog.User, userName string) error {
	var creds scram.StoredCredentials
	var err error
	if u != nil {
		creds, err = scramverifier.Parse(u.Verifier)
	}
	if u == nil || err != nil {
		creds = mockCredentials(ss.srv.cfg.MockAuthKey, userName)
	}
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return fmt.Errorf("starting scram: %w", err)
	}
	mechs := []string{mechSCRAM}
	var cb scram.ChannelBinding
	if ss.cc.tls != nil && ss.srv.binding.IsSupported() {
		cb = ss.srv.binding
		mechs = []string{mechSCRAMPlus, mechSCRAM}
	}
	if err := ss.writeStartup(&pgproto3.AuthenticationSASL{AuthMechanisms: mechs}); err != nil {
		return err
	}
	body, err := ss.readAuthMessage()
	if err != nil {
		return err
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(body); err != nil {
		return fatalf(codeProtocolViolation, "invalid SASL initial response: %v", err)
	}
	var conv *scram.ServerConversation
	switch {
	case first.AuthMechanism == mechSCRAMPlus && cb.IsSupported():
		conv = server.NewConversationWithChannelBinding(cb)
	case first.AuthMechanism == mechSCRAM && cb.IsSupported():
		// Advertised -PLUS but the client chose plain: the conversation rejects
		// a "y" flag (a downgrade) and accepts "n" (no channel binding support).
		conv = server.NewConversationWithChannelBinding(cb)
	case first.AuthMechanism == mechSCRAM:
		conv = server.NewConversation()
	default:
		return fatalf(codeProtocolViolation, "client selected an invalid SASL authentication mechanism %q", first.AuthMechanism)
	}
	failed := func() error {
		return fatalf(codeInvalidPassword, "password authentication failed for user %q", userName)
	}
	reply, err := conv.Step(string(first.Data))
	if err != nil {
		return failed()
	}
	if err := ss.writeStartup(&pgproto3.AuthenticationSASLContinue{Data: []byte(reply)}); err != nil {
		return err
	}
	body, err = ss.readAuthMessage()
	if err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if err := resp.Decode(body); err != nil {
		return fatalf(codeProtocolViolation, "invalid SASL response: %v", err)
	}
	final, err := conv.Step(string(resp.Data))
	if err != nil || !conv.Valid() || u == nil {
		return failed()
	}
	if err := ss.writeStartup(&pgproto3.AuthenticationSASLFinal{Data: []byte(final)}); err != nil {
		return err
	}
	return ss.writeStartup(&pgproto3.AuthenticationOk{})
}

// mockCredentials are the SCRAM credentials shown for an unknown user, as
// PostgreSQL's mock authentication does: salt and keys derived from the
// server secret key and the user name (HMAC-SHA256), so every attempt for a
// name sees the same salt, and PostgreSQL's default iteration count, the
// count of every verifier the catalog makes (scramverifier.Make). No password
// matches: the exchange fails as for a wrong password.
func mockCredentials(key []byte, userName string) scram.StoredCredentials {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(userName))
		return m.Sum(nil)
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(derive("salt")[:16]), Iters: scramverifier.Iterations},
		StoredKey:  derive("stored key"),
		ServerKey:  derive("server key"),
	}
}

// readAuthMessage reads one 'p' message (a SASL response) and returns its body.
func (ss *session) readAuthMessage() ([]byte, error) {
	typ, msg, err := ss.cc.rd.Next()
	if err != nil {
		return nil, err
	}
	if typ != wire.PasswordMessage {
		return nil, fatalf(codeProtocolViolation, "expected SASL response, got message type %q", typ)
	}
	return msg[5:], nil
}

func (ss *session) writeStartup(m pgproto3.BackendMessage) error {
	_, err := ss.cc.conn.Write(appendMsg(nil, m))
	return err
}

// serverEndpointBinding computes the tls-server-end-point channel binding
// (RFC 5929) of the proxy's own certificate: the hash of the certificate the
// client saw. Without a certificate it returns the zero binding (no -PLUS).
func serverEndpointBinding(cfg *tls.Config) scram.ChannelBinding {
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return scram.ChannelBinding{}
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Certificates[0].Certificate[0]); err != nil {
			return scram.ChannelBinding{}
		}
	}
	// The library computes the binding from the peer's view of a connection;
	// the proxy's own certificate is what its clients see as the peer.
	cb, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
	if err != nil {
		return scram.ChannelBinding{}
	}
	return cb
}
