package adminapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// SessionCookie is the name of the app's sign-in cookie (HttpOnly,
// SameSite=Lax, Secure over HTTPS).
const SessionCookie = "adminapp_session"

// sessionClaims is what a session cookie says: who signed in, until when.
type sessionClaims struct {
	User    string `json:"u"`
	Expires int64  `json:"exp"`
}

// signSession makes a cookie value: the claims, a dot, their HMAC-SHA256.
func (a *App) signSession(user string, now time.Time) string {
	b, _ := json.Marshal(sessionClaims{User: user, Expires: now.Add(a.cfg.SessionTTL).Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(a.mac(payload))
}

func (a *App) mac(payload string) []byte {
	m := hmac.New(sha256.New, a.cfg.SessionKey)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// sessionUser returns the signed-in user of r: a cookie signed with the
// app's key, not expired, naming a configured user.
func (a *App) sessionUser(r *http.Request) (User, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return User{}, false
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return User{}, false
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(got, a.mac(payload)) {
		return User{}, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return User{}, false
	}
	var cl sessionClaims
	if json.Unmarshal(b, &cl) != nil || !a.cfg.Now().Before(time.Unix(cl.Expires, 0)) {
		return User{}, false
	}
	u, ok := a.users[cl.User]
	return u, ok
}

// checkPassword finds the user name with password, comparing in constant
// time (over digests, so that lengths do not show either).
func (a *App) checkPassword(name, password string) (User, bool) {
	u, ok := a.users[name]
	want := sha256.Sum256([]byte(u.Password))
	got := sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	return u, ok && match
}

func (a *App) setSession(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
}

// sameOrigin reports whether a state-changing request comes from the
// app's own pages: Sec-Fetch-Site says same-origin, or, from a browser
// that does not send it, Origin is this host's. A request with neither is
// refused: it is no browser's, and the app has no API for programs.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
	default:
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	o := r.Header.Get("Origin")
	return o != "" && o == scheme+"://"+r.Host
}
