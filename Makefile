# The two commands of the README: `make drill` (main job on the local lab) and `make test`.
SHELL := /bin/bash
ROOT  := $(CURDIR)
export PATH := $(ROOT)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg

.PHONY: bootstrap lab-up lab-down lab-status drill test test-lint test-sanity test-core-min test-unit test-integration test-molecule bench

bootstrap:
	@scripts/bootstrap

lab-up: bootstrap
	@lab/labctl up

lab-down:
	@lab/labctl down

lab-status:
	@lab/labctl status

drill: lab-up
	ansible-playbook playbooks/dr_drill.yml

test: bootstrap
	@scripts/run-tests all

test-lint: bootstrap
	@scripts/run-tests lint

test-sanity: bootstrap
	@scripts/run-tests sanity

# ansible-test sanity and units on the declared minimum ansible-core (meta/runtime.yml)
test-core-min: bootstrap
	@scripts/run-tests core-min

test-unit: bootstrap
	@scripts/run-tests unit

test-integration: bootstrap
	@scripts/run-tests integration

# one Molecule scenario (make test-molecule SCENARIO=dr) or, without SCENARIO, every one
test-molecule: bootstrap
	@scripts/run-tests molecule $(SCENARIO)

bench: lab-up
	.venv/bin/python bench/run.py
	.venv/bin/python bench/redis_bench.py
	.venv/bin/python bench/s3.py
	.venv/bin/python bench/drill.py
	.venv/bin/python bench/pitr_postgresql.py
	.venv/bin/python bench/pitr_s3.py
	.venv/bin/python bench/drill_pitr.py
