// attention_engine.h must compile as C++ (extern "C", no C-only constructs) with every warning as an error.
#include <cstddef>

#include "attention_engine.h"

static_assert(sizeof(DLTensor) == 48, "DLTensor has DLPack 1.x's 48-byte layout on 64-bit targets");
static_assert(sizeof(ae_options) == 112, "ae_options is 112 bytes: ABI version 1's first 80, then the dropout fields");
static_assert(offsetof(ae_options, dropout) == 80, "the dropout fields follow the first header's 80 bytes");

int attention_engine_header_compiles_as_cxx() {
  ae_options options = ae_options_default();
  options.mask = AE_MASK_CAUSAL | AE_MASK_WINDOW;
  return static_cast<int>(options.struct_size);
}
