package org.ssdkd.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.exp

/** One ranked class. */
data class Prediction(val index: Int, val label: String, val probability: Float)

/** Model output -> values -> probabilities -> top-k, as `Preprocessing.values` and `probabilities` do in Python. */
object Postprocessing {
    /** `((code - zero_point) * scale)` in float64, then float32 (`dequantize`). */
    fun dequantize(codes: IntArray, q: QuantParams): FloatArray =
        FloatArray(codes.size) { ((codes[it].toDouble() - q.zeroPoint.toDouble()) * q.scale).toFloat() }

    /** Raw output tensor bytes (batch 1) -> float32 values: logits or probabilities, as `config.outputKind` says. */
    fun values(output: ByteBuffer, config: PreprocessingConfig): FloatArray {
        val buf = output.duplicate().order(ByteOrder.nativeOrder())
        buf.rewind()
        val type = config.outputType
        return when (type) {
            TensorType.FLOAT32 -> FloatArray(buf.remaining() / 4) { buf.getFloat() }
            TensorType.INT8 -> dequantize(IntArray(buf.remaining()) { buf.get().toInt() }, config.outputQuant!!)
            TensorType.UINT8 -> dequantize(IntArray(buf.remaining()) { buf.get().toInt() and 0xFF }, config.outputQuant!!)
            TensorType.FLOAT16 -> throw ConfigException(
                "float16 model output is not supported by the app: export the model with float32 or int8 output",
            )
        }
    }

    /** Raw output tensor bytes (batch 1) -> class probabilities (softmax of logits, or the model's own softmax). */
    fun probabilities(output: ByteBuffer, config: PreprocessingConfig): FloatArray {
        val v = values(output, config)
        return if (config.outputKind == OutputKind.PROBABILITIES) v else softmax(v)
    }

    /** Numerically stable softmax (float64 accumulation). */
    fun softmax(logits: FloatArray): FloatArray {
        require(logits.isNotEmpty()) { "softmax of an empty vector" }
        val max = logits.max().toDouble()
        val e = DoubleArray(logits.size) { exp(logits[it].toDouble() - max) }
        val sum = e.sum()
        return FloatArray(logits.size) { (e[it] / sum).toFloat() }
    }

    /** Indices of the [k] largest values, largest first; equal values keep index order (a stable sort). */
    fun topK(values: FloatArray, k: Int): IntArray =
        values.indices.sortedWith(compareByDescending<Int> { values[it] }.thenBy { it }).take(k).toIntArray()

    fun predictions(probabilities: FloatArray, labels: List<String>, k: Int): List<Prediction> =
        topK(probabilities, k).map { Prediction(it, labels.getOrElse(it) { i -> "class $i" }, probabilities[it]) }
}

/** Latency statistics for the benchmark: percentiles with linear interpolation (numpy's default). */
object LatencyStats {
    fun percentile(values: DoubleArray, p: Double): Double {
        require(values.isNotEmpty()) { "percentile of no values" }
        require(p in 0.0..100.0) { "percentile must be in [0, 100], got $p" }
        val sorted = values.sortedArray()
        val rank = p / 100.0 * (sorted.size - 1)
        val lo = Math.floor(rank).toInt()
        val hi = minOf(lo + 1, sorted.size - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo)
    }
}
