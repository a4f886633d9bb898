package org.ssdkd.demo.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import java.util.Locale

/** Element types `preprocessing.json` may name for the model input and output. */
enum class TensorType(val jsonName: String, val byteSize: Int, val minCode: Int, val maxCode: Int) {
    FLOAT32("float32", 4, 0, 0),
    FLOAT16("float16", 2, 0, 0),
    INT8("int8", 1, -128, 127),
    UINT8("uint8", 1, 0, 255);

    val isQuantized: Boolean get() = this == INT8 || this == UINT8

    companion object {
        fun fromJson(name: String, field: String): TensorType =
            entries.firstOrNull { it.jsonName == name }
                ?: throw ConfigException("$field must be one of ${entries.joinToString { it.jsonName }}, got '$name'")
    }
}

enum class Layout { NHWC, NCHW }

/** What the output tensor holds: logits (the app applies softmax) or probabilities (the model ends in softmax, as
 * the int8 exports do so that their 8-bit output grid lands on probabilities). */
enum class OutputKind(val jsonName: String) {
    LOGITS("logits"),
    PROBABILITIES("probabilities");

    companion object {
        fun fromJson(name: String, field: String): OutputKind =
            entries.firstOrNull { it.jsonName == name }
                ?: throw ConfigException("$field must be one of ${entries.joinToString { it.jsonName }}, got '$name'")
    }
}

/** Affine quantization: `real = (code - zeroPoint) * scale`. */
data class QuantParams(val scale: Double, val zeroPoint: Int)

/** A `preprocessing.json` (or `labels.txt`) that does not satisfy the contract; the message names the field. */
class ConfigException(message: String) : IllegalArgumentException(message)

/**
 * The `preprocessing.json` contract written by the exporter (`models.preprocessing.Preprocessing.to_json()`,
 * schema_version 1): everything the app needs to know about the model's input and output.
 */
class PreprocessingConfig(
    val inputSize: Int,
    val mean: DoubleArray,
    val std: DoubleArray,
    val labels: List<String>,
    val layout: Layout,
    val inputType: TensorType,
    val inputQuant: QuantParams?,
    val outputType: TensorType,
    val outputQuant: QuantParams?,
    val outputKind: OutputKind,
    /** Softmax temperature fitted on the val split: the app shows softmax(logits / T); 1.0 when none was fitted. */
    val temperature: Double,
    val modelFile: String,
) {
    /** Number of elements of one input image tensor (batch 1). */
    val inputElements: Int get() = inputSize * inputSize * 3

    override fun toString(): String =
        "${inputSize}x$inputSize $layout, input ${inputType.jsonName}" +
            (inputQuant?.let { " (scale ${it.scale}, zero-point ${it.zeroPoint})" } ?: "") +
            ", output ${outputType.jsonName} ${outputKind.jsonName}, ${labels.size} classes, " +
            if (temperature == 1.0) "uncalibrated (T = 1)" else "calibrated (T = ${"%.2f".format(Locale.US, temperature)})"

    companion object {
        const val SCHEMA_VERSION = 1
        const val COLOR = "RGB"
        const val RESIZE = "center_crop_box_bilinear"
        const val DEFAULT_MODEL_FILE = "model.tflite"

        /** Parse and validate; [source] names the file in error messages. */
        fun parse(json: String, source: String = "preprocessing.json"): PreprocessingConfig {
            val root = try {
                JSONObject(json)
            } catch (e: JSONException) {
                throw ConfigException("$source: not valid JSON (${e.message})")
            }
            return fromJson(root, source)
        }

        fun fromJson(o: JSONObject, source: String = "preprocessing.json"): PreprocessingConfig {
            val version = if (o.has("schema_version")) o.opt("schema_version") else null
            if (version !is Number || version.toDouble() != SCHEMA_VERSION.toDouble()) {
                throw ConfigException("$source: schema_version $version is not supported (expected $SCHEMA_VERSION)")
            }
            try {
                return build(o, source)
            } catch (e: JSONException) {
                throw ConfigException("$source: missing or invalid field (${e.message})")
            }
        }

        private fun build(o: JSONObject, source: String): PreprocessingConfig {
            val size = o.getInt("input_size")
            if (size <= 0) throw ConfigException("$source: input_size must be positive, got $size")
            val mean = doubles(o.getJSONArray("mean"))
            val std = doubles(o.getJSONArray("std"))
            if (mean.size != 3 || std.size != 3 || std.any { it <= 0.0 }) {
                throw ConfigException("$source: mean/std must be 3 numbers with std > 0")
            }
            val labelArray = o.getJSONArray("labels")
            val labels = (0 until labelArray.length()).map { labelArray.getString(it) }
            if (labels.isEmpty()) throw ConfigException("$source: labels must not be empty")
            val layoutName = o.optString("layout", "NCHW")
            val layout = Layout.entries.firstOrNull { it.name == layoutName }
                ?: throw ConfigException("$source: layout must be NCHW or NHWC, got '$layoutName'")
            val outputKind = OutputKind.fromJson(
                if (o.isNull("output_kind")) OutputKind.LOGITS.jsonName else o.getString("output_kind"),
                "$source: output_kind",
            )
            expect(o, "color", COLOR, source)
            expect(o, "resize", RESIZE, source)
            val inputType = TensorType.fromJson(o.optString("input_dtype", "float32"), "$source: input_dtype")
            val outputType = TensorType.fromJson(o.optString("output_dtype", "float32"), "$source: output_dtype")
            val modelFile = if (o.isNull("model_file")) DEFAULT_MODEL_FILE else o.getString("model_file")
            return PreprocessingConfig(
                inputSize = size,
                mean = mean,
                std = std,
                labels = labels,
                layout = layout,
                inputType = inputType,
                inputQuant = quant(o, "input", inputType, source),
                outputType = outputType,
                outputQuant = quant(o, "output", outputType, source),
                outputKind = outputKind,
                temperature = temperature(o, source),
                modelFile = modelFile,
            )
        }

        /** Absent (a contract written before calibration existed) means 1.0, as in Python. */
        private fun temperature(o: JSONObject, source: String): Double {
            if (!o.has("temperature")) return 1.0
            val t = o.get("temperature")
            if (t !is Number || t.toDouble().isNaN() || t.toDouble().isInfinite() || t.toDouble() <= 0.0) {
                throw ConfigException("$source: temperature must be a finite number > 0, got $t")
            }
            return t.toDouble()
        }

        private fun expect(o: JSONObject, field: String, allowed: String, source: String) {
            if (o.isNull(field)) return
            val value = o.getString(field)
            if (value != allowed) throw ConfigException("$source: $field must be '$allowed', got '$value'")
        }

        private fun quant(o: JSONObject, side: String, type: TensorType, source: String): QuantParams? {
            if (!type.isQuantized) return null
            if (o.isNull("${side}_scale") || o.isNull("${side}_zero_point")) {
                throw ConfigException("$source: ${side}_dtype ${type.jsonName} needs ${side}_scale and ${side}_zero_point")
            }
            val scale = o.getDouble("${side}_scale")
            val zeroPoint = o.getInt("${side}_zero_point")
            if (!(scale > 0.0) || scale.isInfinite()) {
                throw ConfigException("$source: ${side}_scale must be a positive number, got $scale")
            }
            if (zeroPoint < type.minCode || zeroPoint > type.maxCode) {
                throw ConfigException(
                    "$source: ${side}_zero_point $zeroPoint is outside the ${type.jsonName} range " +
                        "[${type.minCode}, ${type.maxCode}]",
                )
            }
            return QuantParams(scale, zeroPoint)
        }

        private fun doubles(a: JSONArray): DoubleArray = DoubleArray(a.length()) { a.getDouble(it) }
    }
}

/** `labels.txt`: one class name per line, in output order. */
object Labels {
    fun parse(text: String): List<String> = text.lines().map { it.trim() }.dropLastWhile { it.isEmpty() }

    /** Checks `labels.txt` against the labels in `preprocessing.json`. */
    fun check(fromFile: List<String>, config: PreprocessingConfig) {
        if (fromFile != config.labels) {
            throw ConfigException(
                "labels.txt (${fromFile.size} labels: ${fromFile.take(4)}...) does not match preprocessing.json " +
                    "(${config.labels.size} labels: ${config.labels.take(4)}...)",
            )
        }
    }
}
