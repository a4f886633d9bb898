package org.ssdkd.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.exp
import kotlin.math.max
import kotlin.math.pow

/** One ranked class. */
data class Prediction(val index: Int, val label: String, val probability: Float)

/** Model output -> values -> probabilities -> top-k, as `Preprocessing.values`, `probabilities` and `tempered` do in
 * Python. */
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

    /** Raw output tensor bytes (batch 1) -> calibrated class probabilities: softmax of logits, or the model's own
     * softmax, at the contract's temperature. */
    fun probabilities(output: ByteBuffer, config: PreprocessingConfig): FloatArray =
        tempered(values(output, config), config.temperature, config.outputKind)

    /**
     * Class probabilities at [temperature]: `softmax(logits / T)`, or from a model's own probabilities `p^(1/T)`
     * renormalised -- the same numbers, as `log p` is the logits less a constant (a zero on an int8 grid stays
     * zero). At T = 1 probabilities are returned as they are. No argmax changes at any T > 0.
     */
    fun tempered(values: FloatArray, temperature: Double, kind: OutputKind): FloatArray = when {
        kind == OutputKind.LOGITS -> softmax(values, temperature)
        temperature == 1.0 -> values
        else -> {
            val p = DoubleArray(values.size) { max(values[it].toDouble(), 0.0).pow(1.0 / temperature) }
            val sum = p.sum()
            FloatArray(values.size) { (p[it] / sum).toFloat() }
        }
    }

    /** Numerically stable `softmax(logits / temperature)` (float64 accumulation). */
    fun softmax(logits: FloatArray, temperature: Double = 1.0): FloatArray {
        require(logits.isNotEmpty()) { "softmax of an empty vector" }
        val max = logits.max().toDouble()
        val e = DoubleArray(logits.size) { exp((logits[it].toDouble() - max) / temperature) }
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
