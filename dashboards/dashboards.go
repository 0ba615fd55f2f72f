package dashboards

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// FS holds grafana/** and alerts/**.
//
//go:embed grafana alerts
var FS embed.FS

// Datasource UIDs the boards use.
const (
	MetricsUID = "victoriametrics"
	LogsUID    = "victorialogs"
)

// BoardsDir is the directory of the boards in FS.
const BoardsDir = "grafana/dashboards"

// Query is one query of one panel.
type Query struct {
	Board, Panel string // board title, panel title
	RefID        string
	Datasource   string // "victoriametrics" or "victorialogs" (the UID)
	Expr         string // the query with variables substituted
}

// Fixed values of Grafana's interval variables in PanelQueries.
const (
	Interval     = "1m"
	RateInterval = "1m"
	Range        = "1h"
)

// PanelQueries returns every query of every panel of every board (rows
// expanded, collapsed rows' panels included), with $project (and
// ${project}, [[project]]) replaced by project, a regular expression such
// as "acme" or ".*", and $__interval, $__rate_interval and $__range by
// Interval, RateInterval and Range. A board that is not valid JSON, or a
// panel without a query or a datasource, is an error.
func PanelQueries(project string) ([]Query, error) {
	names, err := fs.Glob(FS, path.Join(BoardsDir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	r := strings.NewReplacer(
		"${project}", project, "[[project]]", project, "$project", project,
		"${__rate_interval}", RateInterval, "$__rate_interval", RateInterval,
		"${__interval}", Interval, "$__interval", Interval,
		"${__range}", Range, "$__range", Range,
	)
	var out []Query
	for _, name := range names {
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			return nil, err
		}
		var d board
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("dashboards: %s: %w", name, err)
		}
		if d.Title == "" {
			return nil, fmt.Errorf("dashboards: %s: no title", name)
		}
		for _, p := range d.allPanels() {
			if len(p.Targets) == 0 {
				return nil, fmt.Errorf("dashboards: %s: panel %q has no query", name, p.Title)
			}
			for _, t := range p.Targets {
				uid := t.Datasource.UID
				if uid == "" {
					uid = p.Datasource.UID
				}
				if uid == "" || strings.TrimSpace(t.Expr) == "" {
					return nil, fmt.Errorf("dashboards: %s: panel %q query %s has no datasource or no expression", name, p.Title, t.RefID)
				}
				out = append(out, Query{Board: d.Title, Panel: p.Title, RefID: t.RefID, Datasource: uid, Expr: r.Replace(t.Expr)})
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dashboards: no panels")
	}
	return out, nil
}

// AlertRuleFiles returns the paths inside FS of the vmalert rule files.
func AlertRuleFiles() []string {
	names, _ := fs.Glob(FS, "alerts/*.yml") // the pattern is valid
	sort.Strings(names)
	return names
}

// board is the part of a Grafana dashboard PanelQueries reads.
type board struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Datasource dsRef    `json:"datasource"`
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"` // a row's panels while it is collapsed
}

type target struct {
	RefID      string `json:"refId"`
	Datasource dsRef  `json:"datasource"`
	Expr       string `json:"expr"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// allPanels returns the panels that show data, rows expanded.
func (d *board) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}
