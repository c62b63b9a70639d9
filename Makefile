# Entry points. Every target that runs something first runs scripts/setup, which only checks
# (about a second) once the machine is set up.
SHELL := /bin/bash
VENV := .venv
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba

# Extra flags for scripts/setup (e.g. SETUP_FLAGS=--no-system) and arguments for the command a
# target runs (e.g. make test ARGS="-m 'not netns' -x").
SETUP_FLAGS ?=
ARGS ?=

.PHONY: setup test demo bench lint ansible-test image

setup:
	scripts/setup $(SETUP_FLAGS)

test:
	scripts/setup --quiet $(SETUP_FLAGS)
	scripts/test $(ARGS)

# The whole appliance on this machine with generated traffic (mirrorflow demo --help; as root).
demo:
	scripts/setup --quiet $(SETUP_FLAGS)
	@mkdir -p "$(NUMBA_CACHE_DIR)"
	$(VENV)/bin/mirrorflow demo $(ARGS)

bench:
	scripts/setup --quiet $(SETUP_FLAGS)
	@test -f bench/__main__.py || { echo "make bench: no benchmarks yet (bench/__main__.py is missing)" >&2; exit 1; }
	@mkdir -p "$(NUMBA_CACHE_DIR)"
	$(VENV)/bin/python -m bench $(ARGS)

lint:
	scripts/setup --quiet $(SETUP_FLAGS)
	$(VENV)/bin/ruff check appliance tests bench $(ARGS)

# Deployment: the Ansible roles (lint, converge into a chroot) and the appliance image (build,
# boot under QEMU with mirrored traffic). Root; ~10-15 min.
ansible-test:
	scripts/setup --quiet $(SETUP_FLAGS)
	scripts/test tests/integration/test_ansible.py tests/integration/test_vm_image.py $(ARGS)

image:
	vm-image/build $(ARGS)
