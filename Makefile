# Everything installs itself: `make demo` and `make test` work on a fresh machine with Python 3.10+.
# On a machine with NVIDIA GPUs: `make venv GPU=1` (CUDA build of TensorFlow; then training uses the GPUs).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED = 1

.PHONY: demo readme test test-slow bench bench-image bench-text bench-serve bench-scale bench-explain bench-data bench-predict fuzz venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# gRPC stubs for `cnnapp serve --port`. tensorflow-serving-api declares a dependency on full
	# `tensorflow`, which would stack a second TensorFlow (same import name) on tensorflow-cpu:
	# install it alone. Its real needs, grpcio and protobuf, are in pyproject.toml (within
	# tensorflow-cpu's own pins, so nothing is downgraded).
	$(PY) -m pip install -q --no-deps 'tensorflow-serving-api==2.21.0'
ifeq ($(GPU),1)
	# tensorflow-cpu and tensorflow share one import name: swap, don't stack.
	$(PY) -m pip uninstall -y -q tensorflow-cpu
	$(PY) -m pip install -q 'tensorflow[and-cuda]==2.21.0'
endif
	touch $(STAMP)

## The main job on the embedded default (offline): train, export, predict.
demo: $(STAMP)
	$(VENV)/bin/cnnapp train-image --name digits
	$(VENV)/bin/cnnapp predict saved_models/digits $$($(PY) -m cnnapp.data.image.digits --write-samples runs/digits-samples)
	$(VENV)/bin/cnnapp train-text --name demo-sentences
	$(VENV)/bin/cnnapp predict saved_models/demo-sentences "a moving and beautifully acted film" "dull , lifeless and far too long"

## README.md's output blocks (<!-- output --> markers), pasted from a fresh run of their commands (a few minutes).
readme: $(STAMP)
	$(PY) docs/readme_outputs.py

## The test suite (~8 minutes on 2 cores); test-slow: the longest integration runs and real-data trainings (CI runs both).
test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: bench-image bench-text bench-serve bench-scale bench-explain bench-data bench-predict

## Full Fashion-MNIST from Debian (needs root for apt-get), cnnapp vs the keras-io peer.
bench-image: $(STAMP)
	@test -d /usr/share/datasets/fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)
	$(PY) benchmarks/bench_image.py

bench-text: $(STAMP)
	$(PY) benchmarks/bench_text.py

bench-serve: $(STAMP)
	$(PY) benchmarks/bench_serve.py --ceiling

bench-scale: $(STAMP)
	$(PY) benchmarks/bench_scale.py

bench-explain: $(STAMP)
	$(PY) benchmarks/bench_explain.py

## Cold `cnnapp predict` with the export's LiteRT model against the SavedModel; LiteRT float/int8 accuracy and size.
bench-predict: $(STAMP)
	$(PY) benchmarks/bench_predict.py

## 25,000 generated photos and 1M generated sentences: cnnapp's data path against Keras' streaming folder pipeline.
bench-data: $(STAMP)
	$(PY) benchmarks/bench_data.py

## A live `cnnapp serve` under >= 2,000 hostile REST and >= 500 hostile gRPC calls, good ones checked between them:
## 5xx, wrong answers, peak RSS and the worst status GET against issue 25's targets (exit 1 when one is missed).
fuzz: $(STAMP)
	$(PY) benchmarks/fuzz_serve.py

clean:
	rm -rf $(VENV) runs build *.egg-info
