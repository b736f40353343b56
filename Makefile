# strata — the two commands a new user needs are `make run` and `make test`.

CARGO ?= cargo
STRATA := target/release/strata

.PHONY: all build run test lint schema clean

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

clean:
	rm -rf var
