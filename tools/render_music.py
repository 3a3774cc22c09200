"""Render the package's real-music example from a public-domain score (a developer tool).

Usage::

    python tools/render_music.py                      # writes musicgen_nb/audio/data/minuet.*
    python tools/render_music.py --soundfont X.sf2    # another General MIDI soundfont
    python tools/render_music.py --check              # exit 1 if the committed OGG's sha256 differs
                                                      # from PROVENANCE.json

What it does: the first eight bars of the Minuet in G major, BWV Anh. 114 (Christian Petzold,
c. 1725, from the Notebook for Anna Magdalena Bach; public domain), typed in below as note
names, become a two-track Standard MIDI File (acoustic grand piano melody, cello bass) written
byte by byte here; ``fluidsynth`` renders it at 32 kHz with the FluidR3_GM soundfont (MIT
licence; Debian/Ubuntu package ``fluid-soundfont-gm``); the mix is cut to 10 s, made mono,
peak-normalised to -1 dBFS and encoded as Ogg Vorbis. ``PROVENANCE.json`` next to it records the
score, the soundfont and its licence, the fluidsynth version, the command and the OGG's sha256.

CI never needs fluidsynth: the OGG is committed, this tool only regenerates it.
Needs: ``apt-get install fluidsynth fluid-soundfont-gm``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from musicgen_nb._util.files import write_atomic  # noqa: E402
from musicgen_nb.audio.ogg import fix_ogg_serial  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "musicgen_nb" / "audio" / "data"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SR = 32000
SECONDS = 10.0
BPM = 144
TICKS = 480  # per quarter note

# Minuet in G, BWV Anh. 114, bars 1-8 (3/4). (note or "+"-joined chord, length in quarter notes);
# typed here and checked note by note against the Bach-Gesellschaft text as typeset (public domain)
# by the Mutopia Project, piece 75 (BachJS/BWVAnh114/anna-magdalena-04). Both hands as written,
# without ornaments (bar 3's and 5's mordents, bar 8's grace note).
MELODY = [
    ("D5", 1), ("G4", .5), ("A4", .5), ("B4", .5), ("C5", .5),  # bar 1
    ("D5", 1), ("G4", 1), ("G4", 1),  # bar 2
    ("E5", 1), ("C5", .5), ("D5", .5), ("E5", .5), ("F#5", .5),  # bar 3
    ("G5", 1), ("G4", 1), ("G4", 1),  # bar 4
    ("C5", 1), ("D5", .5), ("C5", .5), ("B4", .5), ("A4", .5),  # bar 5
    ("B4", 1), ("C5", .5), ("B4", .5), ("A4", .5), ("G4", .5),  # bar 6
    ("F#4", 1), ("G4", .5), ("A4", .5), ("B4", .5), ("G4", .5),  # bar 7
    ("A4", 3),  # bar 8
]  # fmt: skip
BASS = [
    ("G3+B3+D4", 2), ("A3", 1),  # bar 1 (a chord: the three notes sound together)
    ("B3", 3),  # bar 2
    ("C4", 3),  # bar 3
    ("B3", 3),  # bar 4
    ("A3", 3),  # bar 5
    ("G3", 3),  # bar 6
    ("D4", 1), ("B3", 1), ("G3", 1),  # bar 7
    ("D4", 1), ("D3", .5), ("C4", .5), ("B3", .5), ("A3", .5),  # bar 8
]  # fmt: skip
PIANO, CELLO = 0, 42  # General MIDI programs (0-based): acoustic grand piano, cello
SCORE = {
    "title": "Minuet in G major, BWV Anh. 114, bars 1-8",
    "composer": "Christian Petzold (1677-1733), long attributed to J. S. Bach",
    "source": "Notebook for Anna Magdalena Bach (1725)",
    "status": "public domain (composer died 1733; the notes were typed in tools/render_music.py)",
    "checked_against": "Bach-Gesellschaft edition as typeset by the Mutopia Project, piece 75 "
    "(https://www.mutopiaproject.org/cgibin/piece-info.cgi?id=75), public domain",
    "parts": "melody (right hand): acoustic grand piano (GM 1); bass (left hand, as written, "
    "ornaments left out): cello (GM 43)",
    "tempo_bpm": BPM,
}


def note_number(name: str) -> int:
    """MIDI number of a name like ``"F#5"`` (C4 = 60)."""
    pc = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}[name[0]]
    sharp = 1 if name[1] == "#" else 0
    return 12 * (int(name[1 + sharp :]) + 1) + pc + sharp


def varlen(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(notes: list[tuple[str, float]], channel: int, program: int, velocity: int) -> bytes:
    """One MTrk chunk: tempo (first track only matters), program change, legato notes and chords."""
    events = varlen(0) + bytes([0xFF, 0x51, 3]) + (60_000_000 // BPM).to_bytes(3, "big")
    events += varlen(0) + bytes([0xC0 | channel, program])
    for name, quarters in notes:
        keys, length = [note_number(n) for n in name.split("+")], round(quarters * TICKS)
        for key in keys:
            events += varlen(0) + bytes([0x90 | channel, key, velocity])
        for i, key in enumerate(keys):  # all notes of a chord end together
            events += varlen(length if i == 0 else 0) + bytes([0x80 | channel, key, 0])
    events += varlen(0) + bytes([0xFF, 0x2F, 0])
    return b"MTrk" + struct.pack(">I", len(events)) + events


def midi_bytes() -> bytes:
    """A format-1 Standard MIDI File with the melody and the bass."""
    header = b"MThd" + struct.pack(">IHHH", 6, 1, 2, TICKS)
    return header + track(MELODY, 0, PIANO, 90) + track(BASS, 1, CELLO, 70)


def render(midi: Path, wav: Path, soundfont: Path) -> str:
    """Run fluidsynth; returns the command line as run."""
    cmd = ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SR), "-F", str(wav), str(soundfont),
           str(midi)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return " ".join(cmd)


def finish(wav: Path) -> np.ndarray:
    """Mono, the first SECONDS, short fade-out, peak at -1 dBFS."""
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == SR, sr
    x = x.mean(axis=1)[: int(SECONDS * SR)]
    fade = int(0.25 * SR)
    x[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return (x * (10 ** (-1 / 20) / max(float(np.abs(x).max()), 1e-9))).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """Render, encode, write the OGG and PROVENANCE.json (or --check them)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--soundfont", type=Path, default=SOUNDFONT)
    p.add_argument("--check", action="store_true", help="only compare the OGG with PROVENANCE")
    args = p.parse_args(argv)
    ogg, prov = OUT_DIR / "minuet.ogg", OUT_DIR / "PROVENANCE.json"
    if args.check:
        want = json.loads(prov.read_text())["minuet"]["sha256"]
        return 0 if hashlib.sha256(ogg.read_bytes()).hexdigest() == want else 1
    if shutil.which("fluidsynth") is None or not args.soundfont.is_file():
        sys.exit("needs fluidsynth and a soundfont: apt-get install fluidsynth fluid-soundfont-gm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_name = tmp
        midi, wav = Path(tmp) / "minuet.mid", Path(tmp) / "minuet.wav"
        midi.write_bytes(midi_bytes())
        cmd = render(midi, wav, args.soundfont)
        x = finish(wav)
        out = Path(tmp) / "minuet.ogg"
        sf.write(out, x, SR, format="OGG", subtype="VORBIS")
        data = fix_ogg_serial(out.read_bytes())  # libsndfile picks a random stream serial
    version = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True)
    record = {
        "minuet": {
            "file": "minuet.ogg",
            "score": SCORE,
            "soundfont": {
                "name": args.soundfont.name,
                "licence": "MIT (FluidR3_GM by Frank Wen; Debian package fluid-soundfont-gm)",
            },
            "renderer": version.stdout.splitlines()[0].strip(),
            "command": cmd.replace(tmp_name, "$TMPDIR"),
            "post": f"mono mix, first {SECONDS:g} s, 0.25 s fade-out, peak -1 dBFS, Ogg Vorbis "
            "(soundfile/libsndfile, default quality)",
            "sample_rate": SR,
            "seconds": SECONDS,
            "regenerate": "python tools/render_music.py",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_atomic(ogg, data, overwrite=True)  # a kill halfway leaves the old file, never half of one
    write_atomic(prov, json.dumps(record, indent=2) + "\n", overwrite=True)
    print(f"wrote {ogg} ({len(data) / 1024:.0f} KB) and {prov}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
