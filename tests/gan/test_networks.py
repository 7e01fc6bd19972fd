import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.macs import count_cost
from slimlab.gan.checkpoint import load_discriminator, load_generator, save_discriminator, save_generator
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator, make_student, slice_init


def test_resnet_generator_macs_and_params_counted_by_hand():
    # ngf 2, one block, 8x8 input: widths 2 (8x8), 4 (4x4), 8 (2x2)
    generator = build_generator(GeneratorSpec(ngf=2, n_blocks=1))
    cost = count_cost(generator, (3, 8, 8))
    conv_in = 8 * 8 * 2 * (3 * 49)         # c7s1: every output sums 3 channels x 7x7
    down = 4 * 4 * 4 * (2 * 9) + 2 * 2 * 8 * (4 * 9)
    block = 2 * (2 * 2 * 8 * (8 * 9))      # two 3x3 convs 8->8 at 2x2
    up = (2 * 2 * 8) * (4 * 9) + (4 * 4 * 4) * (2 * 9)  # transposed: input elements x out x 3x3
    conv_out = 8 * 8 * 3 * (2 * 49)
    assert cost.macs == conv_in + down + block + up + conv_out == 46848
    weights = 3 * 2 * 49 + 2 * 4 * 9 + 4 * 8 * 9 + 2 * 8 * 8 * 9 + 8 * 4 * 9 + 4 * 2 * 9 + 2 * 3 * 49
    biases = 2 + 4 + 8 + 2 * 8 + 4 + 2 + 3
    assert cost.params == weights + biases == 2499
    assert generator(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)


def test_patch_discriminator_shape_and_macs_by_hand():
    discriminator = PatchDiscriminator(3, ndf=2)
    logits, features = discriminator.logits_and_features(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 1, 2, 2)  # H/8 - 2
    assert [tuple(f.shape[1:]) for f in features] == [(2, 16, 16), (4, 8, 8), (8, 4, 4), (16, 3, 3)]
    expected = 16 * 16 * 2 * 48 + 8 * 8 * 4 * 32 + 4 * 4 * 8 * 64 + 3 * 3 * 16 * 128 + 2 * 2 * 1 * 256
    assert count_cost(discriminator, (3, 32, 32)).macs == expected == 60416


def test_unet_generator_shape_and_width_multiplier():
    spec = GeneratorSpec(kind="unet", ngf=4, num_downs=5)
    unet = build_generator(spec)
    assert unet(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    teacher = build_generator(GeneratorSpec(ngf=8, n_blocks=2))
    student, student_spec = make_student(teacher, GeneratorSpec(ngf=8, n_blocks=2), 0.5)
    assert student_spec.ngf == 4
    # params of the body scale with ratio^2: the 3x3 residual convs hold 4 ngf x 4 ngf x 9 weights
    assert student.model[10].conv_block[1].weight.shape == (16, 16, 3, 3)
    assert teacher.model[10].conv_block[1].weight.shape == (32, 32, 3, 3)
    slice_init(student, teacher)
    assert torch.equal(student.model[1].weight, teacher.model[1].weight[:4, :3])


def test_checkpoint_of_wrong_architecture_names_the_keys(tmp_path):
    spec = GeneratorSpec(ngf=4, n_blocks=2)
    save_generator(tmp_path / "G.pt", build_generator(spec), spec)
    generator, loaded = load_generator(tmp_path / "G.pt")
    assert loaded == spec
    with pytest.raises(SlimlabError, match=r"shape mismatches.*model\.1\.weight"):
        load_generator(tmp_path / "G.pt", GeneratorSpec(ngf=8, n_blocks=2))
    with pytest.raises(SlimlabError, match=r"unexpected keys: model\.11"):
        load_generator(tmp_path / "G.pt", GeneratorSpec(ngf=4, n_blocks=1))
    torch.save(build_generator(GeneratorSpec(ngf=4, n_blocks=3)).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(SlimlabError, match="missing keys: model.12"):
        load_generator(tmp_path / "plain.pth", spec)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SlimlabError, match="junk.pt: not a readable torch checkpoint"):
        load_generator(tmp_path / "junk.pt")


def test_plain_patchgan_state_dict_loads_with_its_shape_read_from_the_weights(tmp_path):
    # pytorch-CycleGAN-and-pix2pix NLayerDiscriminator (instance norm): convs at model.0, 2, 5, 8 (n_layers = 3)
    torch.manual_seed(0)
    original = PatchDiscriminator(input_channels=6, ndf=4, n_layers=2)
    state = {f"module.{key}": value for key, value in original.state_dict().items()}  # DataParallel save
    assert sorted(original.state_dict()) == ["model.0.bias", "model.0.weight", "model.2.bias", "model.2.weight",
                                             "model.5.bias", "model.5.weight", "model.8.bias", "model.8.weight"]
    torch.save(state, tmp_path / "latest_net_D.pth")
    loaded = load_discriminator(tmp_path / "latest_net_D.pth")
    assert loaded.spec() == {"input_channels": 6, "ndf": 4, "n_layers": 2}
    x = torch.randn(1, 6, 32, 32)
    assert torch.equal(loaded(x), original(x))
    save_discriminator(tmp_path / "D.pt", original)
    assert load_discriminator(tmp_path / "D.pt").spec() == original.spec()


def test_plain_discriminator_files_that_do_not_fit_are_named(tmp_path):
    torch.save(build_generator(GeneratorSpec(ngf=4, n_blocks=1)).state_dict(), tmp_path / "G.pth")
    with pytest.raises(SlimlabError, match="G.pth: neither a slimlab discriminator file nor a plain PatchGAN"):
        load_discriminator(tmp_path / "G.pth")
    batch_norm = dict(PatchDiscriminator(3, 4).state_dict())
    batch_norm["model.3.running_mean"] = torch.zeros(8)
    torch.save(batch_norm, tmp_path / "bn.pth")
    with pytest.raises(SlimlabError, match="bn.pth: a PatchGAN trained with batch norm"):
        load_discriminator(tmp_path / "bn.pth")
    spec = GeneratorSpec(ngf=4, n_blocks=1)
    save_generator(tmp_path / "G.pt", build_generator(spec), spec)
    with pytest.raises(SlimlabError, match="G.pt: not a slimlab discriminator file"):
        load_discriminator(tmp_path / "G.pt")


@pytest.mark.parametrize("kind", ["resnet", "unet"])
def test_global_skip_adds_the_correction_to_the_input_and_clamps(kind):
    spec = GeneratorSpec(kind=kind, ngf=2, n_blocks=1, num_downs=5, global_skip=True)
    generator = build_generator(spec).eval()
    last = [module for module in generator.modules() if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 0.5)  # the correction is then tanh(0.5) everywhere
    image = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    expected = (image + torch.tanh(torch.tensor(0.5))).clamp(-1, 1)  # 0.6 and above saturate at 1
    assert torch.allclose(generator(image), expected, atol=1e-6)
    assert generator(image).max() == 1.0


def test_global_skip_is_kept_by_students_and_files_and_old_files_load_without_it(tmp_path):
    spec = GeneratorSpec(ngf=8, n_blocks=1, global_skip=True)
    teacher = build_generator(spec)
    _, student_spec = make_student(teacher, spec, 0.5)
    assert student_spec.global_skip and student_spec.ngf == 4
    save_generator(tmp_path / "G.pt", teacher, spec)
    loaded, loaded_spec = load_generator(tmp_path / "G.pt")
    assert loaded_spec.global_skip and loaded.global_skip
    payload = torch.load(tmp_path / "G.pt", weights_only=False)
    del payload["spec"]["global_skip"]  # a file written before the field existed
    torch.save(payload, tmp_path / "old.pt")
    assert load_generator(tmp_path / "old.pt")[1].global_skip is False


def test_global_skip_needs_as_many_output_channels_as_input_channels():
    with pytest.raises(SlimlabError, match="global_skip needs input_channels == output_channels, got 1 and 3"):
        build_generator(GeneratorSpec(input_channels=1, global_skip=True))


def test_bottleneck_layers_pick_gan_compressions_points_and_activations_match_the_forward():
    from slimlab.gan.networks import bottleneck_layers
    assert bottleneck_layers(GeneratorSpec(n_blocks=9)) == (9, 12, 15, 18)  # the layers GAN Compression distils
    assert bottleneck_layers(GeneratorSpec(n_blocks=6)) == (9, 12, 15)
    assert bottleneck_layers(GeneratorSpec(n_blocks=4)) == (9, 12, 13)      # every third block, and the last
    spec = GeneratorSpec(ngf=2, n_blocks=4, global_skip=True)
    generator = build_generator(spec).eval()
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    output, activations = generator.forward_with_activations(image, bottleneck_layers(spec))
    assert torch.equal(output, generator(image))
    assert [tuple(a.shape) for a in activations] == [(1, 8, 4, 4)] * 3  # 4 ngf channels at a quarter side
    with pytest.raises(SlimlabError, match="needs a resnet generator, got 'unet'"):
        bottleneck_layers(GeneratorSpec(kind="unet"))
