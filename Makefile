# Two commands do everything on a fresh clone: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
NODE_DIR := $(shell hack/node.sh)
export PATH := $(NODE_DIR):$(PATH)

UNIT_TESTS := dist/test/unit/*.test.js dist/test/golden/*.test.js
NFT_TESTS := dist/test/nft/*.test.js

.PHONY: all deps build lint crds test test-unit test-nft demo clean

all: build

deps:
	@hack/deps.sh

build: deps
	npx tsc -p tsconfig.json

lint: deps
	npx tsc -p tsconfig.json --noEmit

crds: build
	node dist/src/cmd/crdgen.js crds

test-unit: build
	hack/test.sh $(UNIT_TESTS)

test-nft: build
	hack/test.sh $(NFT_TESTS)

test: build
	hack/test.sh $(UNIT_TESTS) $(NFT_TESTS)

demo: build
	hack/demo.sh

clean:
	rm -rf dist
