package web

import (
	"bytes"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/sagewai/observatory/fleet"
)

// defaultPool names a project's default pool, whose missions are on
// missions.<project> (DESIGN §3).
const defaultPool = "default"

// Label rules: at most maxLabels, keys shaped like ids (with dots), values
// short tags, possibly empty ("any value" in a requirement).
const maxLabels = 16

var (
	labelKeyRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9._:/@-]{0,128}$`)
)

// checkPool validates an optional pool name, shaped like a project id,
// and returns it with the default pool as "".
func checkPool(field, pool string) (string, error) {
	if pool == "" || pool == defaultPool {
		return "", nil
	}
	if !fleet.ValidProjectID(pool) {
		return "", errorf(CodeBadRequest, "%s %q is not a pool id (%s)", field, pool, "^[a-z0-9][a-z0-9_-]{0,62}$")
	}
	return pool, nil
}

// checkPools validates a list of pools and returns it sorted, without
// repeats, "default" for the default pool. In a list the default pool is
// named: an empty entry is no pool id and is refused (where a single pool
// is optional, as a mission's, "" is the field left out).
func checkPools(field string, pools []string) ([]string, error) {
	if len(pools) > maxLabels {
		return nil, errorf(CodeBadRequest, "%s lists more than %d pools", field, maxLabels)
	}
	out := make([]string, 0, len(pools))
	for i, p := range pools {
		if p == "" {
			return nil, errorf(CodeBadRequest, "%s[%d] is empty: name a pool, or %q for the default pool", field, i, defaultPool)
		}
		p, err := checkPool(field, p)
		if err != nil {
			return nil, err
		}
		out = append(out, cmpOr(p, defaultPool))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseLabels reads labels given as a JSON object {"gpu":"a100"} or as a
// list ["gpu=a100","ssd"] (a bare key maps to "", which in a mission's
// requirement means any value). null or absent is no labels.
func parseLabels(field string, raw json.RawMessage) (map[string]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	labels := map[string]string{}
	switch raw[0] {
	case '{':
		if err := json.Unmarshal(raw, &labels); err != nil {
			return nil, errorf(CodeBadRequest, "%s must map label names to strings", field)
		}
	case '[':
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errorf(CodeBadRequest, "%s must list strings like \"gpu=a100\"", field)
		}
		for _, l := range list {
			k, v, _ := strings.Cut(l, "=")
			if _, dup := labels[k]; dup {
				return nil, errorf(CodeBadRequest, "%s names %q twice", field, k)
			}
			labels[k] = v
		}
	default:
		return nil, errorf(CodeBadRequest, "%s must be an object or a list", field)
	}
	if len(labels) > maxLabels {
		return nil, errorf(CodeBadRequest, "%s has more than %d labels", field, maxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !labelKeyRE.MatchString(k) {
			return nil, errorf(CodeBadRequest, "%s: label %q does not match %s", field, k, labelKeyRE)
		}
		if !labelValueRE.MatchString(labels[k]) {
			return nil, errorf(CodeBadRequest, "%s: the value of %s does not match %s", field, k, labelValueRE)
		}
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}
