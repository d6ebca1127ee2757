# Convenience targets; the scripts are the source of truth.
.PHONY: test demo release lint fmt
test:
	./scripts/test
demo:
	./scripts/demo
release:
	./scripts/check-release
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
fmt:
	cargo fmt
