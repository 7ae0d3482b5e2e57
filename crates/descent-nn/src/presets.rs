//! Models by name: PyTorch's examples/mnist `Net`, LeNet-5 and a small ResNet, for
//! `(channels, height, width)` inputs and any number of classes.

use crate::spec::{LayerSpec, ModelSpec, Pair};

/// The preset names, `mlp` (the seed's, shaped by its own settings) first.
pub const PRESETS: &[&str] = &["mlp", "cnn", "lenet5", "resnet"];

fn linear(name: &str, out: usize) -> LayerSpec {
    LayerSpec::Linear {
        name: Some(name.into()),
        in_features: None,
        out_features: out,
        bias: true,
        tie: None,
    }
}

fn conv(
    name: Option<&str>,
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> LayerSpec {
    LayerSpec::Conv2d {
        name: name.map(str::to_string),
        in_channels: None,
        out_channels: out,
        kernel: Pair::One(kernel),
        stride: Pair::One(stride),
        padding: Pair::One(padding),
        dilation: Pair::One(1),
        groups: 1,
        bias,
    }
}

fn bn(name: Option<&str>) -> LayerSpec {
    LayerSpec::BatchNorm2d {
        name: name.map(str::to_string),
        momentum: 0.1,
        eps: 1e-5,
        affine: true,
    }
}

fn max_pool(k: usize) -> LayerSpec {
    LayerSpec::MaxPool2d {
        kernel: Pair::One(k),
        stride: None,
        padding: Pair::One(0),
    }
}

/// A basic block of ResNet-18 (He et al. 2016): two 3x3 convolutions with BatchNorm, the
/// first strided; a 1x1 strided projection with BatchNorm as shortcut when the shape changes.
fn basic_block(name: &str, channels: usize, stride: usize, project: bool) -> LayerSpec {
    LayerSpec::Residual {
        name: Some(name.into()),
        body: vec![
            conv(Some("conv1"), channels, 3, stride, 1, false),
            bn(Some("bn1")),
            LayerSpec::Relu,
            conv(Some("conv2"), channels, 3, 1, 1, false),
            bn(Some("bn2")),
        ],
        shortcut: match project {
            true => vec![conv(None, channels, 1, stride, 0, false), bn(None)],
            false => Vec::new(),
        },
    }
}

/// The sizes of a GPT (`ModelSpec::gpt`); the defaults are `../shared/bench/torch_gpt.py`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptSize {
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Model width (embedding size).
    pub width: usize,
    /// Context length: tokens per window.
    pub block: usize,
}

impl Default for GptSize {
    fn default() -> Self {
        Self {
            layers: 4,
            heads: 4,
            width: 128,
            block: 128,
        }
    }
}

impl ModelSpec {
    /// A GPT for a vocabulary of `vocab` tokens (GPT-2's layout as nanoGPT writes it):
    /// token and position embeddings (`wte`, `wpe`), `layers` pre-LayerNorm blocks
    /// (`blocks.N`: `ln1`, `qkv`, causal self-attention, `proj`; `ln2`, `fc`, GELU,
    /// `fc_proj`, each half a residual), a final LayerNorm (`ln_f`) and a head tied to the
    /// token embedding. The names are `../shared/bench/torch_gpt.py`'s.
    pub fn gpt(vocab: usize, size: GptSize) -> Self {
        let d = size.width;
        let mut layers = vec![
            LayerSpec::Embedding {
                name: Some("wte".into()),
                num_embeddings: vocab,
                embedding_dim: d,
            },
            LayerSpec::PositionEmbedding {
                name: Some("wpe".into()),
                num_embeddings: size.block,
            },
        ];
        let norm = |name: &str| LayerSpec::LayerNorm {
            name: Some(name.into()),
            normalized_shape: None,
            eps: 1e-5,
            affine: true,
        };
        for i in 0..size.layers {
            let block = format!("blocks.{i}");
            layers.push(LayerSpec::Residual {
                name: Some(block.clone()),
                body: vec![
                    norm("ln1"),
                    linear("qkv", 3 * d),
                    LayerSpec::CausalSelfAttention { heads: size.heads },
                    linear("proj", d),
                ],
                shortcut: Vec::new(),
            });
            layers.push(LayerSpec::Residual {
                name: Some(block),
                body: vec![
                    norm("ln2"),
                    linear("fc", 4 * d),
                    LayerSpec::Gelu {
                        approximate: crate::spec::GeluApprox::None,
                    },
                    linear("fc_proj", d),
                ],
                shortcut: Vec::new(),
            });
        }
        layers.push(norm("ln_f"));
        layers.push(LayerSpec::Linear {
            name: Some("head".into()),
            in_features: None,
            out_features: vocab,
            bias: false,
            tie: Some("wte".into()),
        });
        Self {
            input: vec![size.block],
            layers,
        }
    }

    /// The preset `name` for inputs of `input` shape and `classes` outputs: `cnn`, `lenet5` or
    /// `resnet` (`mlp` is [`ModelSpec::mlp`], which takes its sizes). `None` for another name.
    pub fn preset(name: &str, input: &[usize], classes: usize) -> Option<Self> {
        let layers = match name {
            // PyTorch's examples/mnist Net (../shared/bench/torch_cnn.py).
            "cnn" => vec![
                conv(Some("conv1"), 32, 3, 1, 0, true),
                LayerSpec::Relu,
                conv(Some("conv2"), 64, 3, 1, 0, true),
                LayerSpec::Relu,
                max_pool(2),
                LayerSpec::Dropout { p: 0.25 },
                LayerSpec::Flatten,
                linear("fc1", 128),
                LayerSpec::Relu,
                LayerSpec::Dropout { p: 0.5 },
                linear("fc2", classes),
            ],
            // LeCun et al. 1998, as usually written today: ReLU and max pooling, the 28x28
            // input padded to the original 32x32.
            "lenet5" => vec![
                conv(Some("conv1"), 6, 5, 1, 2, true),
                LayerSpec::Relu,
                max_pool(2),
                conv(Some("conv2"), 16, 5, 1, 0, true),
                LayerSpec::Relu,
                max_pool(2),
                LayerSpec::Flatten,
                linear("fc1", 120),
                LayerSpec::Relu,
                linear("fc2", 84),
                LayerSpec::Relu,
                linear("fc3", classes),
            ],
            // A ResNet for small images: a 3x3 stem, three stages of one basic block
            // (16, 32, 64 channels; the last two strided), global average pooling.
            "resnet" => vec![
                conv(Some("conv1"), 16, 3, 1, 1, false),
                bn(Some("bn1")),
                LayerSpec::Relu,
                basic_block("layer1.0", 16, 1, false),
                LayerSpec::Relu,
                basic_block("layer2.0", 32, 2, true),
                LayerSpec::Relu,
                basic_block("layer3.0", 64, 2, true),
                LayerSpec::Relu,
                LayerSpec::AdaptiveAvgPool2d {
                    output: Pair::One(1),
                },
                LayerSpec::Flatten,
                linear("fc", classes),
            ],
            _ => return None,
        };
        Some(Self {
            input: input.to_vec(),
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPT of `torch_gpt.py` (4 blocks, 4 heads, width 128, block 128) on its 113
    /// characters: its 824 192 parameters, with its names.
    #[test]
    fn gpt_has_torch_gpts_parameters() {
        let m = ModelSpec::gpt(113, GptSize::default()).build().unwrap();
        assert_eq!(m.param_count(), 824_192);
        assert_eq!(m.output_shape(), &[128, 113]);
        let names: Vec<&str> = m.layout().views().iter().map(|v| v.name.as_str()).collect();
        for n in [
            "wte.weight",
            "wpe.weight",
            "blocks.3.fc_proj.bias",
            "ln_f.weight",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert_eq!(names.len(), 2 + 4 * 12 + 2);
    }

    #[test]
    fn presets_build_on_mnist_shapes_with_pytorch_names() {
        let cnn = ModelSpec::preset("cnn", &[1, 28, 28], 10)
            .unwrap()
            .build()
            .unwrap();
        let names: Vec<_> = cnn
            .layout()
            .views()
            .iter()
            .map(|v| (v.name.clone(), v.shape.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("conv1.weight".to_string(), vec![32, 1, 3, 3]),
                ("conv1.bias".into(), vec![32]),
                ("conv2.weight".into(), vec![64, 32, 3, 3]),
                ("conv2.bias".into(), vec![64]),
                ("fc1.weight".into(), vec![128, 9216]),
                ("fc1.bias".into(), vec![128]),
                ("fc2.weight".into(), vec![10, 128]),
                ("fc2.bias".into(), vec![10]),
            ]
        );
        assert_eq!(cnn.param_count(), 1_199_882);
        let lenet = ModelSpec::preset("lenet5", &[1, 28, 28], 10)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(lenet.param_count(), 61_706);
        let resnet = ModelSpec::preset("resnet", &[1, 28, 28], 10)
            .unwrap()
            .build()
            .unwrap();
        assert!(resnet
            .layout()
            .get("layer2.0.shortcut.1.running_var")
            .is_some());
        assert_eq!(resnet.output_shape(), &[10]);
        assert!(ModelSpec::preset("vgg", &[1, 28, 28], 10).is_none());
    }
}
