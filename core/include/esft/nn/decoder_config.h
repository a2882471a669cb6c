#pragma once
// Reading a DecoderSpec from config.json: the parts every family reads the same way live here, so a family's
// config.cpp only states what makes it different.
#include <string>
#include <vector>

#include "esft/model/model_config.h"
#include "esft/nn/decoder.h"

namespace esft::nn {

// A dense decoder (Llama and its descendants), every layer a SwiGLU of `intermediate_size` and no MoE layer. From
// the config it fills vocab_size, hidden_size, rms_norm_eps (also the attention's q/k norm eps),
// tie_word_embeddings, the attention's heads, kv heads and head_dim, and the rotary embedding (rope_type default,
// yarn or llama3, partial_rotary_factor). It leaves to the family: attention biases (qkv_bias, o_bias), q/k norms
// (qk_norm), sliding windows, and anything else a family reads. Requires the keys every decoder needs and throws
// esft::Error, naming key and file, for a missing key or a value no family supports (hidden_act other than silu,
// heads not a multiple of kv heads).
DecoderSpec dense_decoder_spec(const ModelConfig& config, const std::string& family);

// The MoE decoder: dense_decoder_spec's fields, every layer MoE, and a softmax-then-top-k router with the config's
// norm_topk_prob; every layer MoE, dense layers (if a family sets any) of `intermediate_size`. Requires the keys
// every family needs and throws esft::Error, naming key and file, for a missing key or a value no family supports
// (hidden_act other than silu, heads not a multiple of kv heads, no experts).
DecoderSpec common_decoder_spec(const ModelConfig& config, const std::string& family);

// Refuses, naming the config key and `source`, a spec no model can be built from: a size that is not positive or
// beyond any real model (1 << 24 for a width, 4096 decoder layers), top_k outside [1, E], heads that do not divide
// into kv heads, per-layer lists of the wrong length. DecoderLM checks every spec with it before building, so a
// family's config.cpp cannot hand LibTorch a negative dimension.
void check_decoder_spec(const DecoderSpec& spec, const std::string& source);

// Qwen's layer pattern: layer i is MoE unless listed in `mlp_only_layers`, and only every
// `decoder_sparse_step`-th layer is ((i + 1) % step == 0). Requires `intermediate_size` when a layer is dense.
std::vector<bool> sparse_step_moe_layers(const ModelConfig& config);

}  // namespace esft::nn
