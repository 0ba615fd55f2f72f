// Package compose holds the Docker Compose files of Observatory's
// deployments other than the quick-start stack at the repository's root:
// cluster.yml, the production topology of docs/deploy.md (three NATS
// nodes, two serve replicas behind nginx, workers scaled apart,
// VictoriaMetrics scraping every replica), with the files it mounts
// (nats/nats.conf, nats/trust.sh, nginx.conf, scrape.yml).
//
// The package has no Go code of its own: its test validates the compose
// file without a Docker engine, which the build machines lack. It parses
// the file with the compose-spec library, checks every flag against the
// real observatory binary's usage, runs nats.conf's cluster with the real
// nats-server and scrape.yml through the real VictoriaMetrics, and holds
// nginx.conf equal to the configuration the load-balancer tests run
// (lbtest.Snippet).
package compose
