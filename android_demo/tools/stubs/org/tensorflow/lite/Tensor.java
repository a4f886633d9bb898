package org.tensorflow.lite;

/** Compile-only stub of LiteRT's {@code org.tensorflow.lite.Tensor}. */
public interface Tensor {
    DataType dataType();

    int numBytes();

    int[] shape();

    String name();

    QuantizationParams quantizationParams();

    /** Compile-only stub of {@code Tensor.QuantizationParams}. */
    class QuantizationParams {
        public QuantizationParams(final float scale, final int zeroPoint) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public float getScale() {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public int getZeroPoint() {
            throw new UnsupportedOperationException("compile-only stub");
        }
    }
}
