"""Builder of a labelled multilingual synthetic speech set (see datasets/README.md).

sentences: text from gettext catalogs; voices: Festival and espeak-ng; audio: sox and
ffmpeg steps; plan: every random choice, from a seed; render / longform: carry a plan
out; builder: parallel build and manifest.
"""
