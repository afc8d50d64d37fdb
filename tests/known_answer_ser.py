"""A real Wav2Vec2 audio classifier with hand-set weights: loud windows say "angry", quiet ones "calm".

It goes through save_pretrained / from_pretrained and the same engine as any checkpoint, so
a test can check windowing, batching, score order and segment alignment against an answer
it controls. How the weights make loudness visible through Wav2Vec2's layer norms:

1. One conv layer with three channels: a constant K (bias only), v = mean-ish of the
   samples, and -v. LayerNorm over (K, v, -v) gives the constant channel a value near
   sqrt(2) when |v| << K (quiet) and near 0 when |v| >> K (loud): it depends on v² only.
2. Its affine part keeps that channel and adds a fixed reference channel, so the second
   LayerNorm (feature projection) leaves channel 0 positive for quiet, negative for loud.
3. With no transformer layer and a zeroed positional convolution, the encoder LayerNorm
   turns (h, 0) into (+1, -1) or (-1, +1); mean pooling gives the share of quiet frames,
   and the classifier turns it into calm vs angry logits.
"""

from __future__ import annotations

from pathlib import Path

LABELS = ["calm", "angry"]


def build_loudness_classifier(dest: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    config = Wav2Vec2Config(
        conv_dim=(3,), conv_kernel=(400,), conv_stride=(320,), conv_bias=True, feat_extract_norm="layer",
        hidden_size=2, num_hidden_layers=0, num_attention_heads=1, intermediate_size=2,
        num_conv_pos_embeddings=2, num_conv_pos_embedding_groups=1, do_stable_layer_norm=False,
        classifier_proj_size=2, num_labels=2, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = Wav2Vec2ForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Weight-norm directions must stay non-zero (0/0 is NaN); their gains are zeroed.
            p.fill_(1.0) if name.endswith(("original1", "weight_v")) else p.zero_()
        conv = model.wav2vec2.feature_extractor.conv_layers[0]
        conv.conv.bias[0] = 0.1
        conv.conv.weight[1, 0, :] = 1.0
        conv.conv.weight[2, 0, :] = -1.0
        conv.layer_norm.weight[:] = torch.tensor([1.0, 0.0, 0.0])
        conv.layer_norm.bias[:] = torch.tensor([0.0, 0.7, 0.0])
        projection = model.wav2vec2.feature_projection
        projection.layer_norm.weight.fill_(1.0)
        projection.projection.weight[0, 0] = 1.0
        model.wav2vec2.encoder.layer_norm.weight.fill_(1.0)
        model.projector.weight.copy_(torch.eye(2))
        model.classifier.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0]]))
    model.save_pretrained(dest)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, do_normalize=False).save_pretrained(dest)
    return dest
