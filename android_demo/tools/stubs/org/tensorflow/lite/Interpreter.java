package org.tensorflow.lite;

import java.nio.ByteBuffer;

/** Compile-only stub of LiteRT's {@code org.tensorflow.lite.Interpreter}: the members the app uses. */
public final class Interpreter implements AutoCloseable {
    /** Compile-only stub of {@code Interpreter.Options}. */
    public static class Options {
        public Options() {}

        public Options setNumThreads(int numThreads) {
            throw new UnsupportedOperationException("compile-only stub");
        }

        public Options setUseXNNPACK(boolean useXNNPACK) {
            throw new UnsupportedOperationException("compile-only stub");
        }
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public void run(Object input, Object output) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public int getInputTensorCount() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public int getOutputTensorCount() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Tensor getInputTensor(int inputIndex) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Tensor getOutputTensor(int outputIndex) {
        throw new UnsupportedOperationException("compile-only stub");
    }

    public Long getLastNativeInferenceDurationNanoseconds() {
        throw new UnsupportedOperationException("compile-only stub");
    }

    @Override
    public void close() {
        throw new UnsupportedOperationException("compile-only stub");
    }
}
