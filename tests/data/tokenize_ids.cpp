// tokenize_ids.cpp - llama.cpp's token ids for a corpus of strings, the
// reference behind tests/data/tokenizer_tricky.json (see
// gen_tokenizer_tricky.py next to this file, which drives it).
//
// Written against include/llama.h of ggml-org/llama.cpp 0c1e57098 (the tree
// vendored in the llama-cpp-python 0.3.36 sdist); only the public C API is
// used. Build it as an executable linked to `llama` next to
// `add_subdirectory(<llama.cpp>)` in a small CMake project.
//
// usage: tokenize_ids MODEL.gguf CORPUS
//
// The model is loaded with vocab_only = true (no weights, no context).
// CORPUS holds the strings back to back, each as its byte length in decimal,
// a newline, the bytes, and a newline; nothing else (so any byte may appear
// in a string).
//
// Output on stdout: first two header lines
//   vocab <type> <n_tokens>
//   eog <ids, comma-separated>
// (type: llama_vocab_type as an integer; eog: every id llama_vocab_is_eog
// accepts, ascending), then for every string and every
// parse_special in {0, 1}, one line of four tab-separated fields:
//   <index> <parse_special> <ids, comma-separated> <detokenized bytes in hex>
// where the ids are llama_tokenize(text, add_special = false, parse_special)
// and the last field is llama_detokenize(ids, remove_special = false,
// unparse_special = true), i.e. llama.cpp's own round trip of those ids.
// Exit status 1 on any failure, with a message on stderr.

#include "llama.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

void quiet_log(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    if (level >= GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_CONT) {
        fputs(text, stderr);
    }
}

bool read_file(const char * path, std::string & out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        return false;
    }
    std::ostringstream ss;
    ss << f.rdbuf();
    out = ss.str();
    return true;
}

// Splits the length-prefixed corpus; false (with a message) if malformed.
bool parse_corpus(const std::string & data, std::vector<std::string> & out) {
    size_t pos = 0;
    while (pos < data.size()) {
        const size_t nl = data.find('\n', pos);
        if (nl == std::string::npos || nl == pos) {
            fprintf(stderr, "corpus: missing length at byte %zu\n", pos);
            return false;
        }
        size_t len = 0;
        for (size_t i = pos; i < nl; ++i) {
            const char c = data[i];
            if (c < '0' || c > '9' || len > (SIZE_MAX - 9) / 10) {
                fprintf(stderr, "corpus: bad length at byte %zu\n", pos);
                return false;
            }
            len = len * 10 + (size_t) (c - '0');
        }
        const size_t start = nl + 1;
        if (len > data.size() - start || start + len >= data.size() || data[start + len] != '\n') {
            fprintf(stderr, "corpus: string %zu (length %zu) runs past the end or lacks its newline\n",
                    out.size(), len);
            return false;
        }
        out.emplace_back(data, start, len);
        pos = start + len + 1;
    }
    return true;
}

// llama_tokenize, growing the buffer when it reports the needed size.
bool tokenize(const llama_vocab * vocab, const std::string & text, bool parse_special,
              std::vector<llama_token> & ids) {
    ids.assign(text.size() + 16, 0);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(),
                               (int32_t) ids.size(), false, parse_special);
    if (n < 0 && n != INT32_MIN) {
        ids.assign((size_t) -n, 0);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(),
                           (int32_t) ids.size(), false, parse_special);
    }
    if (n < 0) {
        return false;
    }
    ids.resize((size_t) n);
    return true;
}

// llama_detokenize with special tokens rendered and none removed.
bool detokenize(const llama_vocab * vocab, const std::vector<llama_token> & ids, std::string & out) {
    out.assign(ids.size() * 16 + 16, '\0');
    int32_t n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &out[0], (int32_t) out.size(),
                                 false, true);
    if (n < 0) {
        out.assign((size_t) -n, '\0');
        n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &out[0], (int32_t) out.size(),
                             false, true);
    }
    if (n < 0) {
        return false;
    }
    out.resize((size_t) n);
    return true;
}

void print_case(size_t index, bool parse_special, const std::vector<llama_token> & ids,
                const std::string & detok) {
    printf("%zu\t%d\t", index, parse_special ? 1 : 0);
    for (size_t i = 0; i < ids.size(); ++i) {
        printf(i ? ",%d" : "%d", ids[i]);
    }
    putchar('\t');
    for (const unsigned char c : detok) {
        printf("%02x", c);
    }
    putchar('\n');
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf CORPUS\n", argv[0]);
        return 1;
    }
    std::string data;
    std::vector<std::string> corpus;
    if (!read_file(argv[2], data)) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    if (!parse_corpus(data, corpus)) {
        return 1;
    }

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only   = true;
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    printf("vocab %d %d\n", (int) llama_vocab_type(vocab), llama_vocab_n_tokens(vocab));
    printf("eog");
    for (llama_token id = 0, n = 0; id < llama_vocab_n_tokens(vocab); ++id) {
        if (llama_vocab_is_eog(vocab, id)) {
            printf(n++ ? ",%d" : " %d", id);
        }
    }
    printf("\n");

    int status = 0;
    std::vector<llama_token> ids;
    std::string detok;
    for (size_t i = 0; i < corpus.size() && status == 0; ++i) {
        for (const bool parse_special : { false, true }) {
            if (!tokenize(vocab, corpus[i], parse_special, ids) || !detokenize(vocab, ids, detok)) {
                fprintf(stderr, "string %zu: llama_tokenize/llama_detokenize failed\n", i);
                status = 1;
                break;
            }
            print_case(i, parse_special, ids, detok);
        }
    }

    llama_model_free(model);
    llama_backend_free();
    return status;
}
