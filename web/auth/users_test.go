package auth_test

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sagewai/observatory/web/auth"
)

func TestUsersAuthenticate(t *testing.T) {
	u, err := auth.NewUsers(bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Add("admin", "s3cret", auth.RoleAdmin, ""); err != nil {
		t.Fatal(err)
	}
	if err := u.Add("ops", "pw", auth.RoleProject, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, password  string
		wantRole, wantProject string
	}{
		{"admin", "admin", "s3cret", auth.RoleAdmin, ""},
		{"project user", "ops", "pw", auth.RoleProject, "acme"},
		{"wrong password", "admin", "s3cret!", "", ""},
		{"unknown user", "root", "s3cret", "", ""},
		{"empty password", "admin", "", "", ""},
		{"over-long password sharing the prefix", "admin", "s3cret" + string(make([]byte, 80)), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := u.Authenticate(tc.user, tc.password)
			if tc.wantRole == "" {
				if !errors.Is(err, auth.ErrBadCredentials) {
					t.Fatalf("Authenticate = %+v, %v; want ErrBadCredentials", got, err)
				}
				return
			}
			if err != nil || got.Name != tc.user || got.Role != tc.wantRole || got.Project != tc.wantProject {
				t.Fatalf("Authenticate = %+v, %v", got, err)
			}
		})
	}
}

func TestUsersAddRefuses(t *testing.T) {
	u, err := auth.NewUsers(bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Add("admin", "pw", auth.RoleAdmin, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, user, password, role, project string }{
		{"duplicate", "admin", "pw", auth.RoleAdmin, ""},
		{"empty name", "", "pw", auth.RoleAdmin, ""},
		{"empty password", "x", "", auth.RoleAdmin, ""},
		{"password over 72 bytes", "x", string(make([]byte, 73)), auth.RoleAdmin, ""},
		{"unknown role", "x", "pw", "root", ""},
		{"project role without project", "x", "pw", auth.RoleProject, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := u.Add(tc.user, tc.password, tc.role, tc.project); err == nil {
				t.Fatal("Add accepted it")
			}
		})
	}
}
