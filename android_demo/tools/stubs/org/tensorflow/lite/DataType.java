package org.tensorflow.lite;

/** Compile-only stub of LiteRT's {@code org.tensorflow.lite.DataType} (tensor element types). */
public enum DataType {
    FLOAT32, INT32, UINT8, INT64, STRING, BOOL, INT16, INT8;

    public int byteSize() {
        throw new UnsupportedOperationException("compile-only stub");
    }
}
