// Package helmchart holds the tests of Observatory's Helm chart
// (deploy/helm/observatory); it has no code of its own.
//
// The tests render the chart with the real helm binary (built from its Go
// module, found through OBSERVATORY_VM_BIN like the other tools; `make
// deps` installs it) for the default values and values-production.yaml,
// decode every rendered object strictly into its k8s.io/api type (a field
// Kubernetes does not know fails), and check what a cluster operator would
// notice if it broke: pinned images, probes on /healthz and /readyz on the
// HTTP port, a non-root read-only container, secrets only in Secrets, a
// Service that selects the pods, several replicas and a disruption budget
// in production, and only flags and environment variables that
// `observatory serve` really has. They also run `helm lint`, and run the
// production values' container as a kubelet would, short of a container
// runtime: its rendered args, environment and volumes, the real binary,
// against a real three-node NATS cluster (natscluster), up to ready,
// logged in to, and stopped by SIGTERM within the grace period.
//
// helmchart's tests import k8s.io/api, k8s.io/apimachinery,
// sigs.k8s.io/yaml, nats.go's jetstream and natscluster; nothing imports
// it.
package helmchart
