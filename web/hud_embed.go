package web

import (
	"fmt"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/keyring"
	"github.com/sagewai/observatory/web/auth"
)

// SignEmbedToken mints, with one signing key, the embed token that
// Server.IssueEmbedToken would: read-only, for project only, valid for
// ttl (DefaultEmbedTokenTTL when ttl <= 0, at most MaxEmbedTokenTTL) from
// now. SignEmbedTokenRing does the same with a key ring.
func SignEmbedToken(key []byte, project string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	r, err := keyring.Static(key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("web: embed token: %w", err)
	}
	return SignEmbedTokenRing(r, project, ttl, now)
}

// SignEmbedTokenRing mints an embed token with the current key of r, as
// SignEmbedToken does. It serves `observatory embed-token`, which holds
// the servers' key file but no server.
func SignEmbedTokenRing(r *keyring.Ring, project string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	if !fleet.ValidProjectID(project) {
		return "", time.Time{}, fmt.Errorf("web: embed token: project %q is not a project id", project)
	}
	if ttl <= 0 {
		ttl = DefaultEmbedTokenTTL
	}
	if ttl > MaxEmbedTokenTTL {
		return "", time.Time{}, fmt.Errorf("web: embed token: ttl %s exceeds %s", ttl, MaxEmbedTokenTTL)
	}
	signer, err := auth.NewRingSigner(r)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("web: embed token: %w", err)
	}
	iat := now.UTC().Truncate(time.Second)
	exp := iat.Add(ttl)
	tok, err := signer.Sign(auth.Claims{
		ID: auth.NewID(), Subject: subjectFor("embed", auth.RoleProject, project), Role: auth.RoleProject, Project: project,
		Kind: auth.KindEmbed, IssuedAt: iat, ExpiresAt: exp,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("web: embed token: %w", err)
	}
	return tok, exp, nil
}
