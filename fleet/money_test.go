package fleet_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sagewai/observatory/fleet"
)

func TestParseUSD(t *testing.T) {
	tests := []struct {
		in   string
		want fleet.Micros
	}{
		{"0", 0},
		{"1", 1_000_000},
		{"12.5", 12_500_000},
		{"0.000125", 125},
		{"3.10", 3_100_000},
		{"1.", 1_000_000},
		{".5", 500_000},
		{"+2.25", 2_250_000},
		{" 7.000001 ", 7_000_001},
		{"999999999999.999999", 999_999_999_999_999_999},
		// Digits past the sixth decimal round half away from zero.
		{"0.0000004", 0},
		{"0.0000005", 1},
		{"0.00000049999", 0},
		{"1.2345674", 1_234_567},
		{"1.2345675", 1_234_568},
		{"0.9999995", 1_000_000},
		{"0.12345649999999", 123_456},
		// Negatives.
		{"-1.5", -1_500_000},
		{"-0.000001", -1},
		{"-0.0000005", -1},
		{"-0.0000004", 0},
		{"-0", 0},
		// Exponents, as JSON encoders write tiny or huge numbers.
		{"1e-6", 1},
		{"2.5E2", 250_000_000},
		{"-3e-3", -3_000},
	}
	for _, tt := range tests {
		got, err := fleet.ParseUSD(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", " ", "abc", "1.2.3", "--1", "+-1", "-+1", "1,000", "$5", "0x10", "NaN", "Inf", "-Infinity",
		".", "-", "1e", "e5", "1 000", "1_000", "1234567890123", "1e13", "-1e13", "1e400", "١٢",
		// A trillion dollars and more: out of range however written, so that
		// whatever ParseUSD reads, Micros.String writes back readably.
		"1e12", "-1e12", "1000000000000E0", "999999999999.9999995", "-999999999999.9999995", "999999999999.9999996e0"} {
		if got, err := fleet.ParseUSD(in); err == nil {
			t.Errorf("ParseUSD(%q) = %d, want an error", in, got)
		}
	}
}

func TestMicrosJSON(t *testing.T) {
	tests := []struct {
		m    fleet.Micros
		json string
	}{
		{0, `0.000000`},
		{1, `0.000001`},
		{-1, `-0.000001`},
		{999_999, `0.999999`},
		{1_250_000, `1.250000`},
		{-123_456_789, `-123.456789`},
		{999_999_999_999_999_999, `999999999999.999999`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.m)
		if err != nil || string(b) != tt.json {
			t.Errorf("Marshal(%d) = %s, %v; want %s", tt.m, b, err, tt.json)
		}
		var back fleet.Micros
		if err := json.Unmarshal(b, &back); err != nil || back != tt.m {
			t.Errorf("Unmarshal(%s) = %d, %v; want %d", b, back, err, tt.m)
		}
	}

	// Budgets arrive from other programs as numbers or strings.
	var got struct {
		A, B, C, D fleet.Micros
		E          fleet.Micros
	}
	got.E = 42
	in := `{"A": 12.5, "B": "0.000125", "C": 1e-6, "D": -3, "E": null}`
	if err := json.Unmarshal([]byte(in), &got); err != nil {
		t.Fatalf("Unmarshal(%s): %v", in, err)
	}
	want := []fleet.Micros{12_500_000, 125, 1, -3_000_000, 42}
	if diff := cmp.Diff(want, []fleet.Micros{got.A, got.B, got.C, got.D, got.E}); diff != "" {
		t.Errorf("Unmarshal(%s) (-want +got):\n%s", in, diff)
	}
	for _, bad := range []string{`true`, `"ten"`, `[1]`, `{}`, `"1e400"`} {
		var m fleet.Micros
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want an error", bad, m)
		}
	}
}

func TestMicrosCents(t *testing.T) {
	tests := []struct {
		m    fleet.Micros
		want string
	}{
		{0, "0.00"},
		{4_999, "0.00"},
		{5_000, "0.01"},
		{1_234_567, "1.23"},
		{1_235_000, "1.24"},
		{-5_000, "-0.01"},
		{12_345_678_901, "12345.68"},
	}
	for _, tt := range tests {
		if got := tt.m.Cents(); got != tt.want {
			t.Errorf("Micros(%d).Cents() = %q, want %q", tt.m, got, tt.want)
		}
	}
	if got := fleet.Micros(2_500_000).USD(); got != 2.5 {
		t.Errorf("USD() = %v, want 2.5", got)
	}
}
