// rmsnorm_matvec_q8_0.metal — MSL twin of rmsnorm_matvec_q8_0.wgsl:
// y = W · (rmsnorm(x, eps) ⊙ gain) in one dispatch, W in q8_0.
// The norm is a scalar per input vector: each threadgroup computes sum(x²)
// itself and scales the finished dot, so no intermediate buffer is needed.

//#define NORM
//#include matvec_q8_0
