package natsauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Names of the trust chain the embedded server runs.
const (
	OperatorName = "observatory"
	AccountName  = "OBSERVATORY"
	SystemName   = "SYS"
)

// Key files under an Embedded authority's directory, each an nkey seed,
// mode 0600.
const (
	operatorFile = "operator.nk"
	systemFile   = "system.nk"
	accountFile  = "account.nk"
)

// Authority mints the user credentials of Observatory's NATS users. For
// the embedded server it holds the whole trust chain (Embedded): an
// operator, the system account and the application account whose
// JetStream keeps FLEET, AUDIT, MISSIONS and the KV buckets. For an
// external NATS it holds only an account signing key that the operator
// gave serve (External).
type Authority struct {
	signer    nkeys.KeyPair // signs user JWTs: the account key or a signing key
	accountID string        // the account's public key

	// The embedded trust chain; nil for External.
	operator   *jwt.OperatorClaims
	systemID   string
	accountJWT string
	systemJWT  string
}

// Embedded loads the embedded server's trust chain from dir, creating the
// keys the first time (dir is created with mode 0700, each key file with
// 0600). The same dir gives the same account on every start, so JetStream
// finds its data again.
func Embedded(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	op, err := loadOrCreate(filepath.Join(dir, operatorFile), nkeys.PrefixByteOperator)
	if err != nil {
		return nil, err
	}
	sys, err := loadOrCreate(filepath.Join(dir, systemFile), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	acc, err := loadOrCreate(filepath.Join(dir, accountFile), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	opID, _ := op.PublicKey()
	sysID, _ := sys.PublicKey()
	accID, _ := acc.PublicKey()

	oc := jwt.NewOperatorClaims(opID)
	oc.Name = OperatorName
	oc.SystemAccount = sysID
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("natsauth: operator: %w", err)
	}
	// Decoding what was encoded gives the claims the server trusts.
	if oc, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		return nil, fmt.Errorf("natsauth: operator: %w", err)
	}

	sc := jwt.NewAccountClaims(sysID)
	sc.Name = SystemName
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("natsauth: system account: %w", err)
	}

	ac := jwt.NewAccountClaims(accID)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit}
	accJWT, err := ac.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("natsauth: account: %w", err)
	}
	return &Authority{signer: acc, accountID: accID, operator: oc, systemID: sysID, accountJWT: accJWT, systemJWT: sysJWT}, nil
}

// External returns an authority for an account of a NATS that someone
// else operates: signingKey is the seed of the account itself or of one of
// its signing keys, and accountID the account's public key (the issuer of
// serve's own user, see AccountOf).
func External(signingKey []byte, accountID string) (*Authority, error) {
	kp, err := nkeys.FromSeed(trimSeed(signingKey))
	if err != nil {
		return nil, fmt.Errorf("natsauth: account signing key: %w", err)
	}
	if p, err := kp.Seed(); err != nil || len(p) == 0 || p[0] != 'S' || p[1] != 'A' {
		return nil, errors.New("natsauth: the account signing key is not an account seed (SA...)")
	}
	if !nkeys.IsValidPublicAccountKey(accountID) {
		return nil, fmt.Errorf("natsauth: %q is not an account public key", accountID)
	}
	return &Authority{signer: kp, accountID: accountID}, nil
}

// AccountOf returns the account a user's credentials belong to: the
// issuer_account of a JWT a signing key issued, else its issuer.
func AccountOf(creds []byte) (string, error) {
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	if uc.IssuerAccount != "" {
		return uc.IssuerAccount, nil
	}
	return uc.Issuer, nil
}

// AccountID is the public key of the account users are minted in.
func (a *Authority) AccountID() string { return a.accountID }

// Configure puts o in operator mode with the embedded trust chain: the
// operator is trusted, the system account set, and a memory resolver
// preloaded with both accounts. Nothing may connect without a user JWT
// of one of them. It fails for an External authority.
func (a *Authority) Configure(o *server.Options) error {
	if a.operator == nil {
		return errors.New("natsauth: an external account cannot configure a server")
	}
	res := &server.MemAccResolver{}
	if err := res.Store(a.accountID, a.accountJWT); err != nil {
		return fmt.Errorf("natsauth: resolver: %w", err)
	}
	if err := res.Store(a.systemID, a.systemJWT); err != nil {
		return fmt.Errorf("natsauth: resolver: %w", err)
	}
	o.TrustedOperators = []*jwt.OperatorClaims{a.operator}
	o.SystemAccount = a.systemID
	o.AccountResolver = res
	o.NoAuthUser = ""
	return nil
}

// User is what a user's JWT allows.
type User struct {
	// Name names the user in the JWT and the server's logs.
	Name string
	// Publish and Subscribe are the subjects allowed (wildcards as NATS
	// has them); nothing else is.
	Publish, Subscribe []string
	// DenyPublish are subjects refused even where Publish allows them
	// (NATS checks denies first): a narrower hole in a wider grant.
	DenyPublish []string
	// Inbox adds the user's own inbox (InboxPrefix) to Subscribe: what a
	// restricted client needs for replies (JetStream acknowledgements,
	// pulled messages) without reading anyone else's.
	Inbox bool
	// Expires ends the credentials; zero never.
	Expires time.Time
}

// Creds mints a user of the authority's account and returns it as the
// text of a standard NATS credentials file (what nats.UserCredentials
// reads): the user JWT and the user's nkey seed, made afresh.
func (a *Authority) Creds(u User, now time.Time) ([]byte, error) {
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("natsauth: user key: %w", err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = u.Name
	uc.IssuedAt = now.Unix()
	if !u.Expires.IsZero() {
		if !u.Expires.After(now) {
			return nil, fmt.Errorf("natsauth: user %s expires at %s, before now", u.Name, u.Expires.Format(time.RFC3339))
		}
		uc.Expires = u.Expires.Unix()
	}
	sub := u.Subscribe
	if u.Inbox {
		sub = append(slices.Clone(sub), inboxOf(upub)+".>")
	}
	uc.Permissions.Pub.Allow.Add(sortedUnique(u.Publish)...)
	uc.Permissions.Sub.Allow.Add(sortedUnique(sub)...)
	uc.Permissions.Pub.Deny.Add(sortedUnique(u.DenyPublish)...)
	if len(u.Publish) == 0 {
		uc.Permissions.Pub.Deny.Add(">")
	}
	if len(sub) == 0 {
		uc.Permissions.Sub.Deny.Add(">")
	}
	if signer, _ := a.signer.PublicKey(); signer != a.accountID {
		uc.IssuerAccount = a.accountID
	}
	var vr jwt.ValidationResults
	uc.Validate(&vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("natsauth: user %s: %w", u.Name, errors.Join(errs...))
	}
	tok, err := uc.Encode(a.signer)
	if err != nil {
		return nil, fmt.Errorf("natsauth: user %s: %w", u.Name, err)
	}
	seed, err := ukp.Seed()
	if err != nil {
		return nil, fmt.Errorf("natsauth: user %s: %w", u.Name, err)
	}
	return jwt.FormatUserConfig(tok, seed)
}

// InboxPrefix is the inbox prefix of the user of creds: "_INBOX." and the
// user's public key. A restricted user may subscribe only under it, so it
// reads the replies sent to it and nobody else's; its connection must set
// it (nats.CustomInboxPrefix).
func InboxPrefix(creds []byte) (string, error) {
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	return inboxOf(pub), nil
}

func inboxOf(userPub string) string { return "_INBOX." + userPub }

// Parse splits creds into the user JWT and seed, for nats.UserJWTAndSeed,
// and checks that the JWT decodes.
func Parse(creds []byte) (token, seed string, err error) {
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	if _, err := jwt.DecodeUserClaims(tok); err != nil {
		return "", "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return "", "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	s, err := kp.Seed()
	if err != nil {
		return "", "", fmt.Errorf("natsauth: credentials: %w", err)
	}
	return tok, string(s), nil
}

func loadOrCreate(path string, prefix nkeys.PrefixByte) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("natsauth: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("natsauth: %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
		}
		kp, err := nkeys.FromSeed(trimSeed(b))
		if err != nil {
			return nil, fmt.Errorf("natsauth: %s: %w", path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	kp, err := nkeys.CreatePair(prefix)
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	return kp, nil
}

func trimSeed(b []byte) []byte {
	s := strings.TrimSpace(string(b))
	return []byte(s)
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed, so a crash leaves the old file or the new
// one, never a torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// PullConsumer lists what a client must publish to consume the durable
// pull consumer of stream: its info, the next messages, and the
// acknowledgements (ack, nak, in-progress, term) of what it received.
// The replies come to the client's inbox.
func PullConsumer(stream, consumer string) []string {
	return []string{
		"$JS.API.CONSUMER.INFO." + stream + "." + consumer,
		"$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer,
		"$JS.ACK." + stream + "." + consumer + ".>",
	}
}

// sortedUnique returns s sorted without duplicates.
func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
