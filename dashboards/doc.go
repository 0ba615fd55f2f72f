// Package dashboards holds Observatory's observability configuration as
// data, embedded in FS (DESIGN §2):
//
//   - grafana/dashboards: the SRE board (sre.json) and the CFO board
//     (cfo.json), each with a project variable that every per-project
//     panel filters on;
//   - grafana/provisioning: the datasources (VictoriaMetrics as uid
//     victoriametrics, type prometheus; VictoriaLogs as uid victorialogs,
//     type victoriametrics-logs-datasource) and the file provider of the
//     boards;
//   - alerts: the vmalert rules, on metrics (observatory.yml) and on logs
//     (observatory-logs.yml, groups of type vlogs).
//
// The OTel Collector configuration (otel-collector/config.yaml) and the
// VictoriaMetrics scrape configuration (victoriametrics/scrape.yml) sit
// beside them for docker-compose.observability.yml; they are files, not
// embedded.
//
// PanelQueries lists every query of every panel with the board variables
// substituted, so that tests can run them against a real VictoriaMetrics
// or VictoriaLogs; AlertRuleFiles names the rule files in FS (os.CopyFS
// writes FS to a directory for vmalert).
//
// dashboards imports only the standard library.
package dashboards
