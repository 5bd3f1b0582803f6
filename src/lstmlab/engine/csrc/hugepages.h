// Large CPU buffers on transparent huge pages: one madvise before the first write.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lstmlab {

// Lets the kernel back the 2 MB-aligned part of a large CPU buffer with transparent huge pages
// (madvise; a no-op where THP is off).  A fresh 50 MB buffer otherwise costs ~13k page faults
// when first written: measured on the EPYC VM, 18 -> 4 ms to fill one, and (128,128,512,50)
// allocates several per training step.  Only the paging changes, never a value.
inline void advise_huge(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t bytes = t.nbytes();
  if (!t.is_cpu() || bytes < 2 * kHuge) return;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t a = (p + kHuge - 1) & ~(kHuge - 1), e = (p + bytes) & ~(kHuge - 1);
  if (e > a) madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// at::empty, with huge pages advised (advise_huge) before anything is written.
inline at::Tensor big_empty(at::IntArrayRef size, const at::TensorOptions& o) {
  at::Tensor t = at::empty(size, o);
  advise_huge(t);
  return t;
}

}  // namespace lstmlab
