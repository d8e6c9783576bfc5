"""What a recording says about itself is checked, readers never break the writer, and a recorder cleans up after itself.

Attributes edited or flipped, a newer schema, self-attention layers, readers holding the file, a run that failed
before its first step, a reader racing the final rename, the lock file left behind.
"""
import json, os, re, shutil, subprocess, sys, textwrap
from pathlib import Path
import h5py
import numpy as np
import pytest
import torch
import layoutlab.core.record as record
from layoutlab.core.layout import Layout
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.record import Recorder, RecordingError, load_recording, partial_path
from layoutlab.guidance.registry import sample

TOKS = ['<s>', 'a</w>', '</s>'] + ['</s>'] * 74
LAY = Layout('a red circle and a blue square', [dict(phrase='red circle', box=[.1, .1, .5, .5]),
                                                dict(phrase='blue square', box=[.5, .5, .9, .9])], seed=3)
BOX = b'[0.1, 0.1, 0.5, 0.5]'

def maps(): return {'mid': torch.rand(2, 2, 64, 77).softmax(-1)}

def hand_recording(path, steps=3, **kw):
    "A small finished recording written through Recorder (no model), with the layout in its attributes."
    r = Recorder(path, layers=['mid'], **kw)
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt=LAY.prompt, layout=LAY.to_json()))
    for i in range(steps): r.step(900 - i, maps(), energy=float(i))
    r.finish().close()                                       # the returned (lazy) tree holds the file open

@pytest.fixture(scope='module')
def pipe(): return tiny_pipeline('sd15')

# ---- row 7: attributes are checksummed ----

def test_netcdf_prompt_edited_is_refused(tmp_path):
    p = tmp_path/'r.nc'; hand_recording(p)
    with h5py.File(p, 'a') as f: f.attrs['prompt'] = 'a red circle and a blue squarf'
    with pytest.raises(RecordingError, match=re.escape(str(p)) + r'.*attribute\(s\) prompt do not match their checksum'): load_recording(p)

def test_netcdf_box_byte_flipped_is_refused(tmp_path):
    p = tmp_path/'r.nc'; hand_recording(p)
    data = bytearray(p.read_bytes())
    assert LAY.to_json().encode().count(BOX) == 1 and data.count(BOX) == 1
    k = data.index(BOX) + len(BOX) - 2; data[k] ^= 0x03    # 0.5 -> 0.6 inside the layout's JSON
    p.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=r'attribute\(s\) layout do not match their checksum'): load_recording(p)

@pytest.mark.parametrize('edit', ['box', 'steps_completed', 'token_text'])
def test_zarr_json_edited_is_refused(tmp_path, edit):
    p = tmp_path/'r.zarr'; hand_recording(p)
    meta = p/'zarr.json'
    if edit == 'token_text':                                 # a string coordinate, which has no chunk checksum of its own
        import zarr
        z = zarr.open_array(str(p/'attention_8x8'/'token_text'), mode='r+'); z[1] = 'b</w>'
        with pytest.raises(RecordingError, match=r'/attention_8x8/token_text do not match their checksum'): load_recording(p)
        return
    d = json.loads(meta.read_text())
    if edit == 'box': d['attributes']['layout'] = d['attributes']['layout'].replace('0.5, 0.5]', '0.5, 0.6]', 1)
    else: d['attributes']['steps_completed'] = 2
    meta.write_text(json.dumps(d))
    with pytest.raises(RecordingError, match=rf'attribute\(s\) {"layout" if edit == "box" else "steps_completed"} do not match'): load_recording(p)

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_schema_2_recordings_without_checksums_still_load(tmp_path, ext):
    p = tmp_path/f'r.{ext}'; hand_recording(p)
    set_attrs(p, layoutlab_schema=2, layoutlab_checksums=None)   # as layoutlab wrote them before attribute checksums
    rec = load_recording(p); assert rec.sizes['step'] == 3; rec.close()
    set_attrs(p, layoutlab_schema=3)                         # a schema-3 recording that lost its checksums is damaged
    with pytest.raises(RecordingError, match='attribute checksums .* are missing'): load_recording(p)

def set_attrs(p, **attrs):
    "Set (None: delete) root attributes of either format by hand."
    if p.suffix == '.zarr':
        d = json.loads((p/'zarr.json').read_text())
        for k, v in attrs.items():
            if v is None: d['attributes'].pop(k, None)
            else: d['attributes'][k] = v
        (p/'zarr.json').write_text(json.dumps(d))
    else:
        with h5py.File(p, 'a') as f:
            for k, v in attrs.items():
                if v is None: del f.attrs[k]
                else: f.attrs[k] = v

# ---- row 8: a newer schema is refused, not read as an older one ----

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
@pytest.mark.parametrize('schema', [99, '3.0-beta'])
def test_newer_schema_is_refused(tmp_path, ext, schema):
    p = tmp_path/f'r.{ext}'; hand_recording(p)
    set_attrs(p, layoutlab_schema=schema)
    with pytest.raises(RecordingError, match=re.escape(str(p)) + ' was written by a newer layoutlab.*upgrade layoutlab'): load_recording(p)
    set_attrs(p, steps_completed=None)                       # a newer schema may well not have it: still "newer", not "damaged"
    with pytest.raises(RecordingError, match='written by a newer layoutlab'): load_recording(p)

# ---- row 9: self-attention layers are refused by name ----

def test_self_attention_layers_are_refused(tmp_path, pipe):
    p = tmp_path/'r.nc'
    with pytest.raises(RecordingError, match=r'self-attention layers cannot be recorded .*down_blocks\.\S*attn1'):
        sample(pipe, 'a red circle', steps=2, recorder=Recorder(p, layers='*', heads=True), progress=False)
    assert not p.exists() and not partial_path(p).exists()
    Recorder(p).close()                                      # nothing is held
    rec = sample(pipe, 'a red circle', steps=2, recorder=Recorder(p, layers='*attn2', heads=True), progress=False).recording
    assert rec['attention_8x8'].attention.sizes['token'] == 5   # cross-attention: the prompt's tokens

# ---- row 6: a reader holding the live file never breaks the writer ----

READER = textwrap.dedent('''
    import sys, h5py, numpy as np
    f = h5py.File(sys.argv[1], 'r')                         # HDF5's default: a file lock
    print('open', int(np.ravel(f.attrs['steps_completed'])[0]), flush=True)
    sys.stdin.readline(); f.close()
''')

def test_reader_holding_the_partial_file_does_not_break_the_writer(tmp_path):
    p = tmp_path/'r.nc'
    r = Recorder(p, layers=['mid'])
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a'))
    readers = []
    def reader():
        q = subprocess.Popen([sys.executable, '-c', READER, str(partial_path(p))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = q.stdout.readline().split()
        readers.append(q)
        if not line: q.stdin.close(); pytest.fail(q.stderr.read()[-1500:])
        return line
    assert reader()[0] == 'open'                             # before the first step
    for i in range(5):
        r.step(900 - i, maps(), energy=float(i), **({'late': float(i)} if i >= 3 else {}))   # a new variable: the file is reopened
        if i == 1: r.wait(); assert reader() == ['open', '2']   # one more, while the writer has it open
    rec = r.finish()
    for q in readers: q.communicate('done\n', timeout=60)
    assert rec.sizes['step'] == 5 and rec.late.values[3:].tolist() == [3., 4.]

HOLDER = textwrap.dedent('''
    import sys, h5py
    f = h5py.File(sys.argv[1], 'a')                         # another program writing it, with HDF5's lock
    print('held', flush=True); sys.stdin.readline(); f.close()
''')

def test_a_file_under_another_writers_lock_is_read_or_said_to_be_written(tmp_path, monkeypatch):
    p = tmp_path/'r.nc'; hand_recording(p)
    q = subprocess.Popen([sys.executable, '-c', HOLDER, str(p)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert q.stdout.readline().strip() == 'held'
        assert load_recording(p).sizes['step'] == 3         # never "truncated, damaged" for a lock
    finally: q.communicate('done\n', timeout=60)
    # a live recording of ours that cannot be read at this moment is said to be written, not damaged
    r = Recorder(tmp_path/'live.nc', layers=['mid'])
    r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a')); r.step(900, maps())
    def unreadable(path): raise OSError('Unable to synchronously open file (bad object header version number)')
    monkeypatch.setattr(record, '_read_root_attrs', unreadable)
    with pytest.raises(RecordingError, match='live.partial.nc is being written by a run now'): load_recording(partial_path(tmp_path/'live.nc'))
    r.close()

# ---- unclear cases: a Recorder that never began, the final rename, the lock file ----

def test_a_run_that_failed_before_its_first_step_does_not_block_the_next(tmp_path, pipe):
    p = tmp_path/'r.nc'
    rec = Recorder(p)
    with pytest.raises(ValueError, match='multiple of'):
        sample(pipe, 'a red circle', steps=2, height=33, recorder=rec, progress=False)
    Recorder(p).close()                                      # not "being written by another run"
    a = Recorder(p); b = Recorder(p)                         # neither has begun: neither blocks
    b.close(); a.close()

def test_zarr_reader_racing_the_final_rename(tmp_path, monkeypatch):
    final = tmp_path/'r.zarr'
    hand_recording(tmp_path/'x.zarr'); os.rename(tmp_path/'x.zarr', partial_path(final))
    real = record._open_zarr
    def racing(path, *a, **kw):                              # the run finishes between opening and reading
        out = real(path, *a, **kw); os.rename(path, final); return out
    monkeypatch.setattr(record, '_open_zarr', racing)
    with pytest.raises(RecordingError, match=re.escape(f"{partial_path(final)} was moved or deleted while it was being opened; its run has finished: the recording is now at {final}")):
        load_recording(partial_path(final))
    monkeypatch.undo()
    assert load_recording(final).sizes['step'] == 3

@pytest.mark.parametrize('ext', ['nc', 'zarr'])
def test_no_lock_file_is_left_behind(tmp_path, ext):
    p = tmp_path/f'r.{ext}'
    hand_recording(p)
    Recorder(p, overwrite=True).close()
    r = Recorder(tmp_path/f'q.{ext}', layers=['mid']); r.begin(['mid'], TOKS, 3, (8, 8), dict(prompt='a')); r.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([p.name, f'q.partial.{ext}'])   # no .r.nc.lock

def test_a_run_that_fails_after_begin_releases_its_recording(tmp_path, pipe):
    "A seam's bad setting found after the recorder began (here: no layer matches an injection) leaves no lock behind."
    p = tmp_path/'r.nc'
    with pytest.raises(ValueError, match='nomatch'):
        sample(pipe, Layout.from_json(json.dumps({'prompt': 'a red circle', 'objects': [{'phrase': 'red circle', 'box': [.1, .1, .5, .5]}]})), 'ilgd', steps=2, recorder=Recorder(p),
               progress=False, Injection=dict(layers='nomatch'))
    assert not [f.name for f in tmp_path.iterdir() if f.name.endswith('.lock')]
    res = sample(pipe, 'a red circle', steps=2, recorder=Recorder(p, overwrite=True), progress=False)   # the next run is not blocked
    assert res.recording.sizes['step'] == 2
