// logits_ids.cpp - teacher-forced logits from llama.cpp, as a reference for another engine.
//
// Written against include/llama.h of ggml-org/llama.cpp 0c1e57098 (the tree
// vendored in the llama-cpp-python 0.3.36 sdist). Only the public C API is used.
//
// The given token ids are fed exactly as given (no BOS or anything else added),
// one position at a time starting at position 0: one llama_decode per token,
// each with its logits requested. After each decode the full vocab logits
// (llama_get_logits_ith) are appended to the output file as little-endian f32,
// so the file holds n_ids x n_vocab floats in position order (row-major).
//
// Determinism / exactness: CPU only (no GPU device
// is handed to the model, n_gpu_layers 0, no KV/op offload), no CPU weight
// repacking, 1 thread by default, F32 K and V cache, flash attention off.
//
// usage: logits_ids --model M.gguf --ids 1,2,3 --out FILE [--threads N] [--verbose]

#include "llama.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct options {
    std::string              model_path;
    std::string              out_path;
    std::vector<llama_token> ids;
    int                      n_threads = 1;
    bool                     verbose   = false;
};

bool g_verbose = false;

void log_cb(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    if (g_verbose || level >= GGML_LOG_LEVEL_WARN) {
        if (level == GGML_LOG_LEVEL_CONT && !g_verbose) {
            return;
        }
        fputs(text, stderr);
    }
}

void usage(const char * argv0) {
    fprintf(stderr, "usage: %s --model M.gguf --ids 1,2,3 --out FILE [--threads N] [--verbose]\n", argv0);
}

bool parse_int(const char * s, long & v) {
    errno = 0;
    char * end = nullptr;
    const long x = std::strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0) {
        return false;
    }
    v = x;
    return true;
}

bool parse_ids(const std::string & s, std::vector<llama_token> & out) {
    out.clear();
    size_t start = 0;
    while (start <= s.size()) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) {
            comma = s.size();
        }
        std::string tok = s.substr(start, comma - start);
        // trim spaces
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.erase(tok.begin());
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.pop_back();
        long v = 0;
        if (tok.empty() || !parse_int(tok.c_str(), v) || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "bad token id '%s' in --ids\n", tok.c_str());
            return false;
        }
        out.push_back((llama_token) v);
        start = comma + 1;
    }
    return !out.empty();
}

bool parse_args(int argc, char ** argv, options & o) {
    bool have_ids = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto need = [&](const char * what) -> const char * {
            if (i + 1 >= argc) {
                fprintf(stderr, "missing value for %s\n", what);
                return nullptr;
            }
            return argv[++i];
        };
        if (a == "-m" || a == "--model") {
            const char * v = need("--model"); if (!v) return false; o.model_path = v;
        } else if (a == "--ids") {
            const char * v = need("--ids"); if (!v || !parse_ids(v, o.ids)) return false;
            have_ids = true;
        } else if (a == "-o" || a == "--out") {
            const char * v = need("--out"); if (!v) return false; o.out_path = v;
        } else if (a == "-t" || a == "--threads") {
            const char * v = need("--threads"); long t = 0;
            if (!v || !parse_int(v, t) || t < 1 || t > 1024) {
                fprintf(stderr, "bad --threads\n");
                return false;
            }
            o.n_threads = (int) t;
        } else if (a == "--verbose" || a == "-v") {
            o.verbose = true;
        } else if (a == "-h" || a == "--help") {
            return false;
        } else {
            fprintf(stderr, "unknown argument: %s\n", a.c_str());
            return false;
        }
    }
    if (o.model_path.empty() || o.out_path.empty() || !have_ids) {
        fprintf(stderr, "need --model, --ids and --out\n");
        return false;
    }
    return true;
}

bool host_is_little_endian() {
    const uint32_t x = 1;
    unsigned char  b;
    std::memcpy(&b, &x, 1);
    return b == 1;
}

}  // namespace

int main(int argc, char ** argv) {
    options o;
    if (!parse_args(argc, argv, o)) {
        usage(argv[0]);
        return 2;
    }
    if (!host_is_little_endian()) {
        fprintf(stderr, "big-endian host not supported (output must be little-endian f32)\n");
        return 1;
    }
    g_verbose = o.verbose;
    llama_log_set(log_cb, nullptr);

    ggml_backend_load_all();  // no-op for static builds without GGML_BACKEND_DL
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers    = 0;
    mp.use_extra_bufts = false;  // no CPU weight repacking: plain CPU path
    static ggml_backend_dev_t no_devices[1] = { nullptr };
    mp.devices = no_devices;  // empty list: the model gets no GPU device at all

    llama_model * model = llama_model_load_from_file(o.model_path.c_str(), mp);
    if (model == nullptr) {
        fprintf(stderr, "failed to load model %s\n", o.model_path.c_str());
        llama_backend_free();
        return 1;
    }
    const llama_vocab * vocab   = llama_model_get_vocab(model);
    const int           n_vocab = llama_vocab_n_tokens(vocab);
    const int           n_ids   = (int) o.ids.size();
    for (int i = 0; i < n_ids; ++i) {
        if (o.ids[i] < 0 || o.ids[i] >= n_vocab) {
            fprintf(stderr, "token id %d at position %d is out of range (n_vocab %d)\n", o.ids[i], i, n_vocab);
            llama_model_free(model);
            llama_backend_free();
            return 1;
        }
    }
    const int n_ctx_train = llama_model_n_ctx_train(model);
    if (n_ctx_train > 0 && n_ids > n_ctx_train) {
        fprintf(stderr, "warning: %d ids exceed the model's n_ctx_train %d\n", n_ids, n_ctx_train);
    }
    char desc[256];
    llama_model_desc(model, desc, sizeof(desc));
    fprintf(stderr, "model: %s | %s | threads %d\n", o.model_path.c_str(), desc, o.n_threads);

    // one token per llama_decode, so a batch/ubatch of >= 1 suffices; use n_ctx for both anyway
    const uint32_t n_ctx = (uint32_t) n_ids + 8;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx           = n_ctx;
    cp.n_batch         = n_ctx;
    cp.n_ubatch        = n_ctx;
    cp.n_seq_max       = 1;
    cp.n_threads       = o.n_threads;
    cp.n_threads_batch = o.n_threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k          = GGML_TYPE_F32;
    cp.type_v          = GGML_TYPE_F32;
    cp.offload_kqv     = false;
    cp.op_offload      = false;
    cp.embeddings      = false;
    cp.no_perf         = true;

    llama_context * ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) {
        fprintf(stderr, "failed to create context\n");
        llama_model_free(model);
        llama_backend_free();
        return 1;
    }
    if ((int) llama_n_ctx(ctx) < n_ids) {
        fprintf(stderr, "context too small: n_ctx %u < n_ids %d\n", llama_n_ctx(ctx), n_ids);
        llama_free(ctx);
        llama_model_free(model);
        llama_backend_free();
        return 1;
    }

    fprintf(stderr, "n_vocab %d\nn_ids %d\n", n_vocab, n_ids);

    FILE * f = std::fopen(o.out_path.c_str(), "wb");
    if (f == nullptr) {
        fprintf(stderr, "cannot open %s for writing: %s\n", o.out_path.c_str(), std::strerror(errno));
        llama_free(ctx);
        llama_model_free(model);
        llama_backend_free();
        return 1;
    }

    int rc = 0;
    llama_batch batch = llama_batch_init(1, 0, 1);
    for (int pos = 0; pos < n_ids; ++pos) {
        batch.n_tokens     = 1;
        batch.token[0]     = o.ids[pos];
        batch.pos[0]       = pos;
        batch.n_seq_id[0]  = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0]    = 1;  // request this position's logits

        const int32_t ret = llama_decode(ctx, batch);
        if (ret != 0) {
            fprintf(stderr, "llama_decode at position %d (id %d) returned %d\n", pos, o.ids[pos], ret);
            rc = 1;
            break;
        }
        const float * logits = llama_get_logits_ith(ctx, 0);
        if (logits == nullptr) {
            fprintf(stderr, "no logits at position %d\n", pos);
            rc = 1;
            break;
        }
        if (std::fwrite(logits, sizeof(float), (size_t) n_vocab, f) != (size_t) n_vocab) {
            fprintf(stderr, "write to %s failed at position %d: %s\n", o.out_path.c_str(), pos, std::strerror(errno));
            rc = 1;
            break;
        }
        if (o.verbose) {
            int best = 0;
            for (int i = 1; i < n_vocab; ++i) {
                if (logits[i] > logits[best]) best = i;
            }
            fprintf(stderr, "pos %d id %d: argmax %d (%.6f)\n", pos, o.ids[pos], best, logits[best]);
        }
    }
    llama_batch_free(batch);

    if (std::fclose(f) != 0) {
        fprintf(stderr, "closing %s failed: %s\n", o.out_path.c_str(), std::strerror(errno));
        rc = 1;
    }
    if (rc == 0) {
        fprintf(stderr, "wrote %d x %d f32 (%zu bytes) to %s\n", n_ids, n_vocab,
                (size_t) n_ids * (size_t) n_vocab * sizeof(float), o.out_path.c_str());
    }

    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return rc;
}
