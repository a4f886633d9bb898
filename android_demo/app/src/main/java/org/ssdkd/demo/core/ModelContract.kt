package org.ssdkd.demo.core

import kotlin.math.abs

/** What the interpreter reports about one tensor; [type] is null for an element type the app cannot feed. */
class TensorInfo(val shape: IntArray, val type: TensorType?, val typeName: String, val quant: QuantParams?)

/** Checks a loaded model's input/output tensors against `preprocessing.json` and `labels.txt`. */
object ModelContract {
    /** Relative tolerance for scales: the model stores float32, the JSON a float64 printout of it. */
    private const val SCALE_RTOL = 1e-6

    /** Returns the list of mismatches, each naming the field and both values; empty if the model fits. */
    fun problems(config: PreprocessingConfig, input: TensorInfo, output: TensorInfo, labelCount: Int): List<String> {
        val out = mutableListOf<String>()
        val n = config.inputSize
        val want = if (config.layout == Layout.NHWC) intArrayOf(1, n, n, 3) else intArrayOf(1, 3, n, n)
        if (!input.shape.contentEquals(want)) {
            out += "input shape ${input.shape.contentToString()} != ${want.contentToString()} " +
                "(input_size $n, layout ${config.layout})"
        }
        checkType("input", config.inputType, config.inputQuant, input, out)
        val classes = output.shape.fold(1) { acc, d -> acc * d }
        if (output.shape.isEmpty() || output.shape[0] != 1 || classes != labelCount) {
            out += "output shape ${output.shape.contentToString()} does not hold one score per label ($labelCount labels)"
        }
        checkType("output", config.outputType, config.outputQuant, output, out)
        return out
    }

    private fun checkType(side: String, type: TensorType, q: QuantParams?, t: TensorInfo, out: MutableList<String>) {
        if (t.type != type) {
            out += "${side}_dtype ${type.jsonName} in preprocessing.json, but the model's $side is ${t.typeName}"
            return
        }
        if (q == null) return
        val mq = t.quant
        if (mq == null || abs(mq.scale - q.scale) > SCALE_RTOL * q.scale || mq.zeroPoint != q.zeroPoint) {
            out += "${side}_scale/${side}_zero_point ${q.scale}/${q.zeroPoint} in preprocessing.json, " +
                "but the model's $side has ${mq?.scale}/${mq?.zeroPoint}"
        }
    }
}
