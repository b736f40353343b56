# strata — the two commands a new user needs are `make run` and `make test`.

CARGO ?= cargo
STRATA := target/release/strata

.PHONY: all build run test lint schema man clean

all: build

build:
	$(CARGO) build --release

# Generate the example data under var/ (git-ignored), check the example jobs,
# and run every enabled job once.
run: build
	sh examples/make-data.sh var/example
	$(STRATA) validate jobs.d
	$(STRATA) --jobs-dir jobs.d run-all

test:
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Regenerate schemas/job.schema.json from the Rust types.
schema:
	$(CARGO) run --quiet -- schema > schemas/job.schema.json

# The manual pages, generated from the CLI definition: target/man/strata.1
# and one page per command (strata-run.1, ...). Read with `man -l FILE`.
man: build
	$(STRATA) man --dir target/man

clean:
	rm -rf var
