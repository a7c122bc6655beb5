# Two commands do everything on a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
NODE_DIR := $(shell hack/node.sh)
export PATH := $(NODE_DIR):$(PATH)

UNIT_TESTS := dist/test/unit/*.test.js dist/test/golden/*.test.js
NFT_TESTS := dist/test/nft/*.test.js
KUBE_TESTS := dist/test/kube/*.test.js
HELM_TESTS := dist/test/helm/*.test.js
NODE_TESTS := dist/test/node/*.test.js
BENCH_SMOKE := dist/bench/smoke.test.js
BENCHMARKS := packet-path apply incremental incremental-api footprint convergence control-plane

.PHONY: all deps build lint crds test test-unit test-nft test-kube kube-assets demo demo-cluster clean

all: build

deps:
	@hack/deps.sh

build: deps
	npx tsc -p tsconfig.json

lint: deps
	npx tsc -p tsconfig.json --noEmit

crds: build
	node dist/src/cmd/crdgen.js crds
	node dist/src/cmd/crdgen.js charts/nftegress/crds

test-unit: build
	hack/test.sh $(UNIT_TESTS)

test-nft: build
	hack/test.sh $(NFT_TESTS)

# Real kube-apiserver, etcd and kube-controller-manager, built from Go modules into a cache
# outside the repo on first use (KUBEBUILDER_ASSETS overrides).
kube-assets:
	@hack/kube-assets.sh >/dev/null

test-kube: build kube-assets gitops-health
	hack/test.sh $(KUBE_TESTS)

# What Argo CD and Flux make of our statuses, by their own code: docs/argocd-health.lua in
# gopher-lua with Argo CD's libraries, and cli-utils' kstatus (hack/gitops-health, built from
# Go modules into the cache on first use, about 30 s).
.PHONY: gitops-health
gitops-health:
	@hack/gitops-health.sh >/dev/null

test: build kube-assets node-assets helm gitops-health
	hack/test.sh $(UNIT_TESTS) $(NFT_TESTS) $(KUBE_TESTS) $(HELM_TESTS) $(NODE_TESTS) $(BENCH_SMOKE)

# A real node: kubelet, kube-scheduler and containerd run the chart's DaemonSet from the
# project's image (hack/node-image.sh), all inside a network namespace (hack/node-cluster.sh).
# kubelet and kube-scheduler are built into the cache on first use (about 11 minutes cold).
.PHONY: node-assets test-node demo-node
node-assets:
	@hack/kube-assets.sh --node >/dev/null

test-node: build kube-assets node-assets helm
	hack/test.sh $(NODE_TESTS)

demo-node: build kube-assets node-assets helm
	hack/demo-node.sh $(DEMO_ARGS)

# Packaging: helm lint/template/install/upgrade/uninstall, RBAC and admission by impersonation
# against a real API server, Argo CD and Flux health (gitops-health), the dashboard's metric names. helm v3.22.0
# is built from the Go module proxy into the cache on first use (hack/helm.sh; HELM_BIN overrides).
.PHONY: helm test-helm manifests
helm:
	@hack/helm.sh >/dev/null

test-helm: build kube-assets helm gitops-health
	hack/test.sh $(HELM_TESTS)

# Regenerates deploy/ (plain manifests for `kubectl apply -f deploy/`) from charts/nftegress.
manifests: build helm
	node dist/test/helm/support/write-deploy.js

# Benchmarks (bench/README.md): `make bench` runs each at full size and writes
# bench/results/<name>.json (about 21 minutes), then the summary table in bench/README.md
# from those files (bench/summary.ts); `make bench-smoke` runs them at tiny sizes
# (about 2 minutes; part of `make test`). Root, network namespaces and iperf3 needed;
# incremental-api, convergence and control-plane also the harness's kube-apiserver and etcd
# (kube-assets).
.PHONY: bench bench-smoke
bench: build kube-assets
	rc=0; for b in $(BENCHMARKS); do node dist/bench/$$b.js || rc=1; done; node dist/bench/packet-path.js --revocation-mark=0x00ff0000 || rc=1; node dist/bench/summary.js --write >/dev/null; exit $$rc

bench-smoke: build kube-assets
	hack/test.sh $(BENCH_SMOKE)

demo: build
	hack/demo.sh

demo-cluster: build kube-assets
	hack/demo-cluster.sh

clean:
	rm -rf dist
