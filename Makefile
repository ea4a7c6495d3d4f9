# make test: set up .venv from requirements.txt when missing or stale, then run the test suite.
#            The set-up also installs Chromium and its driver (Debian packages) when missing and allowed, for the
#            web page's browser tests; without them those tests are skipped with the reason.
# make serve: the web page (app.py) on http://127.0.0.1:7860 with the demo checkpoint (or CKPT=path).
# make demo: the same set-up, then train the small demo model on procedural cartoon faces on the CPU (~8 min),
#            test it and write outputs/demo/grid.png and outputs/demo/metrics.json.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
DEMO := outputs/demo
DEMO_DATA := data_cache/demo
export HF_HUB_OFFLINE := 1

.PHONY: test demo venv clean-demo browser serve
APT_BROWSER := apt-get install -y -q chromium chromium-driver

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

browser:
	@command -v chromedriver >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { $(APT_BROWSER) >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $(APT_BROWSER) >/dev/null 2>&1; }; }; } || \
	  echo "note: Chromium and chromedriver could not be installed; the web page's browser tests will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q --durations=15

serve: $(STAMP)
	$(PY) app.py $(if $(CKPT),--checkpoint $(CKPT))

$(DEMO_DATA)/train/.done: $(STAMP)
	$(PY) -m data.synthetic --out $(DEMO_DATA)/train --count 2000 --size 64 --seed 0 --overwrite
	$(PY) -m data.synthetic --out $(DEMO_DATA)/test --count 64 --size 64 --seed 1 --overwrite
	touch $@

demo: $(DEMO_DATA)/train/.done
	rm -rf $(DEMO)
	$(PY) pretrain.py fit --config configs/cpu64.yaml --config configs/demo.yaml
	$(PY) pretrain.py test --config configs/cpu64.yaml --config configs/demo.yaml --ckpt_path $(DEMO)/checkpoints/last.ckpt
	$(PY) -m apps.demo_report --outputs $(DEMO)/test --out $(DEMO)

clean-demo:
	rm -rf $(DEMO) $(DEMO_DATA)
