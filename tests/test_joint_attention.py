"Joint-attention capture on the tiny SD3 and FLUX transformers, called directly."
import pytest, torch
from diffusers import SD3Transformer2DModel
from diffusers.models.embeddings import apply_rotary_emb
from layoutlab.core.models import tiny_pipeline
from layoutlab.core.attention import capture_attention, select_layers, guidance_layers, energy_layer_rule, attention_layers

N_TXT = 7

def sd3_inputs(tr, b=2):
    c = tr.config; g = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(b, c.in_channels, 16, 16, generator=g), timestep=torch.tensor([500.] * b),
                encoder_hidden_states=torch.randn(b, N_TXT, c.joint_attention_dim, generator=g),
                pooled_projections=torch.randn(b, c.pooled_projection_dim, generator=g))

def flux_inputs(tr, b=2, h=16):
    c = tr.config; g = torch.Generator().manual_seed(1)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(h).float(), indexing='ij')
    img_ids = torch.stack([torch.zeros_like(ys), ys, xs], -1).reshape(-1, 3)
    return dict(hidden_states=torch.randn(b, h * h, c.in_channels, generator=g), timestep=torch.tensor([.5] * b),
                encoder_hidden_states=torch.randn(b, N_TXT, c.joint_attention_dim, generator=g),
                pooled_projections=torch.randn(b, c.pooled_projection_dim, generator=g), txt_ids=torch.zeros(N_TXT, 3), img_ids=img_ids)

@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    sd3x = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
                                 joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=64, out_channels=16,
                                 qk_norm='rms_norm', dual_attention_layers=(0,)).eval()   # qk norms and an SD3.5 dual-attention block
    sd3, flux = tiny_pipeline('sd3').transformer.eval(), tiny_pipeline('flux').transformer.eval()
    return dict(sd3=(sd3, sd3_inputs(sd3)), sd3x=(sd3x, sd3_inputs(sd3x)), flux=(flux, flux_inputs(flux)))

def heads(t, h): return t.view(*t.shape[:2], h, -1)   # (batch, seq, heads, head_dim)

def reference_block(attn, call, flux, block_kwargs=None):
    "Image-query × text-key block of the joint softmax, from the layer's own projections, image and text kept apart."
    x = call.get('hidden_states', None)
    c = call.get('encoder_hidden_states', None)
    h = attn.heads
    if c is None:                                           # FLUX single stream: [text, image] concatenated
        c_in, x = x[:, :N_TXT], x[:, N_TXT:]
        kt = heads(attn.to_k(c_in), h)
        qi, ki = heads(attn.to_q(x), h), heads(attn.to_k(x), h)
        kt = attn.norm_k(kt)
    else:
        qi, ki, kt = heads(attn.to_q(x), h), heads(attn.to_k(x), h), heads(attn.add_k_proj(c), h)
        if attn.norm_added_k is not None: kt = attn.norm_added_k(kt)
    if attn.norm_q is not None: qi, ki = attn.norm_q(qi), attn.norm_k(ki)
    if flux:
        cos, sin = call['image_rotary_emb']                  # rows: text positions first, then image positions
        rot_t, rot_i = (cos[:N_TXT], sin[:N_TXT]), (cos[N_TXT:], sin[N_TXT:])
        qi, ki, kt = apply_rotary_emb(qi, rot_i, sequence_dim=1), apply_rotary_emb(ki, rot_i, sequence_dim=1), apply_rotary_emb(kt, rot_t, sequence_dim=1)
    d = qi.shape[-1]
    s_ii = torch.einsum('bqhd,bkhd->bhqk', qi, ki) / d ** .5
    s_it = torch.einsum('bqhd,bkhd->bhqk', qi, kt) / d ** .5
    p = torch.cat([s_ii, s_it], -1).softmax(-1)
    return p[..., :s_ii.shape[-1]], p[..., s_ii.shape[-1]:]   # image keys, text keys

def record_calls(tr, names):
    calls, hooks = {}, []
    for n in names:
        def hk(m, a, kw, n=n): calls[n] = dict(kw, **({'hidden_states': a[0]} if a else {}))
        hooks.append(tr.get_submodule(n).register_forward_pre_hook(hk, with_kwargs=True))
    return calls, hooks

@pytest.mark.parametrize('kind', ['sd3', 'sd3x', 'flux'])
def test_capture_keeps_output_and_matches_reference(models, kind):
    tr, inp = models[kind]
    names = select_layers(tr, 'cross')
    with torch.no_grad():
        ref = tr(**inp).sample
        calls, hooks = record_calls(tr, names)
        with capture_attention(tr, names) as cap: out = tr(**inp).sample
        for h in hooks: h.remove()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    n_img = 256 if kind == 'flux' else 64
    for n in names:
        m = cap.maps[n]
        assert m.shape == (2, tr.get_submodule(n).heads, n_img, N_TXT), (n, m.shape)
        to_img, to_txt = reference_block(tr.get_submodule(n), calls[n], kind == 'flux')
        torch.testing.assert_close(m, to_txt, atol=1e-5, rtol=1e-4)
        assert (m.sum(-1) < 1).all() and (m.sum(-1) > 0).all()                        # not renormalised over the text
        torch.testing.assert_close(m.sum(-1) + to_img.sum(-1), torch.ones(m.shape[:-1]))  # with the image keys: one

@pytest.mark.parametrize('kind', ['sd3', 'flux'])
def test_identity_edit_changes_nothing(models, kind):
    tr, inp = models[kind]
    full = {}
    def keep(name, s): full[name] = s; return s
    with torch.no_grad(), capture_attention(tr, edit=keep) as cap: tr(**inp)
    with torch.no_grad(), capture_attention(tr) as plain: tr(**inp)
    for n, m in cap.maps.items():
        torch.testing.assert_close(m, plain.maps[n])
        assert full[n].shape == m.shape   # the edit sees the pre-softmax image→text block

@pytest.mark.parametrize('kind', ['sd3', 'sd3x', 'flux'])
def test_edit_raises_share(models, kind):
    tr, inp = models[kind]
    def boost(name, s): s = s.clone(); s[..., 3] += 50; return s
    with torch.no_grad():
        with capture_attention(tr) as plain: tr(**inp)
        with capture_attention(tr, edit=boost) as cap: tr(**inp)
    for n, m in cap.maps.items():
        assert m.shape[-1] == N_TXT
        assert (m[..., 3] > plain.maps[n][..., 3]).all() and (m[..., 3] > .99).all()

@pytest.mark.parametrize('kind', ['sd3', 'flux'])
def test_processors_and_hooks_come_back(models, kind):
    tr, inp = models[kind]
    before = {k: type(p) for k, p in tr.attn_processors.items()}
    hooks_before = {n: len(m._forward_pre_hooks) for n, m in tr.named_modules()}
    with pytest.raises(RuntimeError, match='inside'):
        with capture_attention(tr): raise RuntimeError('inside')
    with torch.no_grad(), capture_attention(tr): tr(**inp)
    assert {k: type(p) for k, p in tr.attn_processors.items()} == before
    assert {n: len(m._forward_pre_hooks) for n, m in tr.named_modules()} == hooks_before

def test_grad_flows_to_latent(models):
    tr, inp = models['flux']
    z = inp['hidden_states'].clone().requires_grad_()
    with capture_attention(tr, grad=True) as cap:
        tr(**dict(inp, hidden_states=z))
        cap.maps['single_transformer_blocks.0.attn'][..., 2].mean().backward()
    assert z.grad.abs().sum() > 0

def test_cross_layer_names(models):
    unet = tiny_pipeline('sd15').unet
    assert select_layers(unet, 'cross') == select_layers(unet, '*attn2') and select_layers(unet) == select_layers(unet, '*attn2')
    assert select_layers(models['sd3'][0]) == ['transformer_blocks.0.attn', 'transformer_blocks.1.attn']
    sd3x = models['sd3x'][0]
    assert 'transformer_blocks.0.attn2' in attention_layers(sd3x)
    assert select_layers(sd3x) == ['transformer_blocks.0.attn', 'transformer_blocks.1.attn', 'transformer_blocks.2.attn']
    assert select_layers(models['flux'][0]) == ['transformer_blocks.0.attn', 'single_transformer_blocks.0.attn']
    assert guidance_layers(models['flux'][0]) == ['transformer_blocks.0.attn']

def test_energy_rule_scales():
    sd3m = [f'transformer_blocks.{i}.attn' for i in range(24)]
    test = energy_layer_rule(sd3m)
    assert test == [f'transformer_blocks.{i}.attn' for i in range(8, 16)]
    flux = [f'transformer_blocks.{i}.attn' for i in range(19)] + [f'single_transformer_blocks.{i}.attn' for i in range(38)]
    assert energy_layer_rule(flux) == [f'transformer_blocks.{i}.attn' for i in range(6, 13)]
    assert energy_layer_rule(['transformer_blocks.0.attn']) == ['transformer_blocks.0.attn']

def test_image_only_layer_is_refused(models):
    tr, inp = models['sd3x']
    with pytest.raises(ValueError, match='no text keys'):
        with torch.no_grad(), capture_attention(tr, 'transformer_blocks.0.attn2'): tr(**inp)

class Adapter:
    "Stands in for the sampler's ε-model adapter: processors delegate to the transformer, which it holds as `.transformer`."
    def __init__(self, tr): self.transformer = tr
    @property
    def attn_processors(self): return self.transformer.attn_processors
    def set_attn_processor(self, p): self.transformer.set_attn_processor(p)

def test_capture_through_an_adapter(models):
    tr, inp = models['flux']
    with torch.no_grad():
        with capture_attention(tr) as direct: tr(**inp)
        with capture_attention(Adapter(tr)) as via: tr(**inp)
    assert via.maps.keys() == direct.maps.keys()
    for n in direct.maps: torch.testing.assert_close(via.maps[n], direct.maps[n])
    assert sum(len(m._forward_pre_hooks) for m in tr.modules()) == 0
