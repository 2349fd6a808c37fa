# netpolbench: `make bench` runs the default sweep, `make test` the test suite.
# Both install what they need first (Debian packages through apt-get), so a fresh root
# machine needs nothing by hand.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
CLANG ?= clang-19
export BPF_CLANG := $(CLANG)
export BPF_CFLAGS := -O2 -g -Wall -Werror
# bpf2go strips DWARF with this; pinned with clang so no other LLVM on the machine takes part.
export BPF2GO_STRIP := llvm-strip-19

# Debian package that provides each command the suite runs.
DEPS := iptables:iptables ipset:ipset nft:nftables $(CLANG):clang-19 llvm-strip-19:llvm-19 \
	bpftool:bpftool ip:iproute2
# Headers the BPF C programs include, and the Debian package of each (only `make generate`
# needs them: the compiled objects are committed).
BPF_HEADERS := /usr/include/bpf/bpf_helpers.h:libbpf-dev \
	/usr/include/x86_64-linux-gnu/asm/types.h:linux-libc-dev
# What only the tests need: Chromium renders the HTML report in the browser test.
TEST_DEPS := chromium:chromium
# The embedded control plane: etcd from Debian (3.4) and kube-apiserver built once from the
# pinned k8s.io/kubernetes release (tools/kube-apiserver, its own module) into a cache
# directory; the version is in the file name, so a present binary is never rebuilt.
K8S_VERSION := v1.37.2
NPB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/netpolbench
KUBE_APISERVER := $(NPB_CACHE)/kube-apiserver-$(K8S_VERSION)
CONTROLPLANE_DEPS := etcd:etcd-server
export NETPOLBENCH_KUBE_APISERVER := $(KUBE_APISERVER)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH_FLAGS ?=
TEST_FLAGS ?=

.PHONY: all build deps test-deps controlplane bpf-deps bench test generate check-generate lint cleanup

all: build

build:
	$(GO) build ./...

deps:
	@missing=(); \
	for d in $(DEPS); do cmd=$${d%%:*}; pkg=$${d##*:}; \
		command -v $$cmd >/dev/null 2>&1 || missing+=($$pkg); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
		echo "deps: installing $${missing[*]}"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "deps: need root to apt-get install $${missing[*]}" >&2; exit 1; fi; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $${missing[*]}; \
	else echo "deps: all present"; fi

# The sweep ends with the end-to-end phase through the embedded control plane.
bench: deps controlplane
	$(GO) run ./cmd/netpolbench bench $(BENCH_FLAGS)

FUZZTIME ?= 15s

test-deps: deps controlplane
	@$(MAKE) --no-print-directory deps DEPS="$(TEST_DEPS)"

controlplane: $(KUBE_APISERVER)
	@$(MAKE) --no-print-directory deps DEPS="$(CONTROLPLANE_DEPS)"

# About 4 minutes on 2 cores, once per machine. -trimpath and the version variables make the
# binary report the release it was built from (kube-apiserver --version, /version).
$(KUBE_APISERVER):
	@mkdir -p $(@D)
	@echo "controlplane: building kube-apiserver $(K8S_VERSION) into $@ (once)"
	cd tools/kube-apiserver && $(GO) build -trimpath -o $@.tmp -ldflags "-s -w \
		-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
		-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
		-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) \
		-X k8s.io/component-base/version.gitTreeState=clean" \
		k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 $(TEST_FLAGS) ./...
	$(GO) test -run='^$$' -fuzz=FuzzCompiledMatchesReference -fuzztime=$(FUZZTIME) ./policy/
	$(GO) test -run='^$$' -fuzz=FuzzLoadCluster -fuzztime=$(FUZZTIME) ./policy/

bpf-deps: deps
	@missing=(); \
	for d in $(BPF_HEADERS); do f=$${d%%:*}; pkg=$${d##*:}; \
		test -f $$f || missing+=($$pkg); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
		echo "bpf-deps: installing $${missing[*]}"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $${missing[*]}; \
	fi

generate: bpf-deps
	$(GO) generate ./...

# Regenerates the BPF objects and fails when they differ from the committed ones.
check-generate: generate
	git diff --exit-code -- '*_bpfel.go' '*_bpfel.o'

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

cleanup:
	$(GO) run ./cmd/netpolbench cleanup
