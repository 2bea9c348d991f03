# Two commands: `make demo` (the main job) and `make test`. Each creates or refreshes .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ALOE := /usr/share/doc/opencv-doc/examples/data/aloeGT.png
# The ROS environment (the PyPI wheels' ament index in the venv, Fast DDS and its profile, discovery on
# this host) is set by ros2_stereo_depth/ros/environment.py, its one home: the demo and test/conftest.py
# call it. A fixed domain keeps the demo off other graphs on the machine.
# Freely licensed photos used as textures by the synthetic generator (docs/DATA_SOURCES.md).
TEXTURE_PACKAGES := mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
TEXTURES := /usr/share/backgrounds/mate/nature/Wood.jpg /usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg \
            /usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg

.PHONY: venv demo test aloe textures clean

venv: $(STAMP)

# The package compiles the local matching's C loops (setup.py): a C compiler and libc headers, from Debian
# when missing.
$(STAMP): requirements.txt constraints.txt setup.py setup.cfg package.xml ros2_stereo_depth/inference/matching_kernels.c
	@command -v gcc >/dev/null && test -f /usr/include/stdlib.h || { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps tensorrt-stubs==$$(sed -n 's/^tensorrt-stubs==//p' constraints.txt)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Real stereo data with ground truth: the Middlebury Aloe pair from Debian's opencv-doc.
aloe: $(ALOE)
$(ALOE):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null

# Natural photos for the synthetic generator's textures (data/textures.py TEXTURE_SOURCES).
textures: $(TEXTURES)
$(TEXTURES):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(TEXTURE_PACKAGES) >/dev/null

demo: $(STAMP)
	ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-42} $(PY) -m ros2_stereo_depth demo --out demo_output

test: $(STAMP) aloe textures
	$(PY) -m pytest test

clean:
	rm -rf $(VENV) demo_output build install log *.egg-info
