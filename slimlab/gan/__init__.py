"""Image-translation GANs: ResNet / U-Net generators, PatchGAN, pix2pix and CycleGAN teachers, and portable-GAN
distillation (a thin student generator trained against a student discriminator)."""

from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, build_generator, make_student

__all__ = ["GeneratorSpec", "PatchDiscriminator", "build_generator", "make_student"]
