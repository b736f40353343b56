# strata — the two commands a new user needs are `make run` and `make test`.

CARGO ?= cargo
# The build lands where cargo puts it: CARGO_TARGET_DIR when set.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
STRATA := $(TARGET_DIR)/release/strata
export STRATA

.PHONY: all build run test lint schema man clean bench bench-1m

all: build

build:
	$(CARGO) build --release

# Generate the example data under var/ (git-ignored), check the example jobs,
# and run every enabled job once.
# strata remembers the example destinations under var/ too, so that
# `make clean` forgets them with the data.
run: build
	sh examples/make-data.sh var/example
	STRATA_STATE_DIR=var/state $(STRATA) validate jobs.d
	STRATA_STATE_DIR=var/state $(STRATA) --jobs-dir jobs.d run-all

# Time strata against find, cp -a, rsync, rsync --link-dest and rdiff-backup on
# generated trees of 10,000 and 100,000 files, and check the SPEC 6 targets
# (needs ../shared/bench, or STRATA_SHARED; installs missing peers with
# apt-get). Results in bench/results/. bench-1m: one 1,000,000-file tree.
bench: build
	python3 bench/bench.py

bench-1m: build
	BENCH_FILES=1000000 BENCH_EXTRAS=0 python3 bench/bench.py

# Installs the tools the tests drive (scripts/test-deps.sh), then runs them.
test:
	sh scripts/test-deps.sh
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Regenerate schemas/job.schema.json from the Rust types.
schema:
	$(CARGO) run --quiet -- schema > schemas/job.schema.json

# The manual pages, generated from the CLI definition: target/man/strata.1
# and one page per command (strata-run.1, ...), and from the job schema:
# strata-jobs.5, the job-file format. Read with `man -l FILE`.
man: build
	$(STRATA) man --dir $(TARGET_DIR)/man

clean:
	rm -rf var
