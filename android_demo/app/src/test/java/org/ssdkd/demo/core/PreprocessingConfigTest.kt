package org.ssdkd.demo.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** `preprocessing.json` parsing: the golden manifest's contract, and bad files rejected with a named field. */
class PreprocessingConfigTest {
    private fun golden(): JSONObject = JSONObject(Golden.manifest.getJSONObject("preprocessing").toString())

    private fun assertRejected(json: String, vararg words: String) {
        try {
            PreprocessingConfig.parse(json, "assets/preprocessing.json")
            fail("accepted: $json")
        } catch (e: ConfigException) {
            val msg = e.message ?: ""
            assertTrue("message '$msg' should name the file", msg.startsWith("assets/preprocessing.json"))
            for (w in words) assertTrue("message '$msg' should mention '$w'", msg.contains(w))
        }
    }

    @Test
    fun parsesTheExporterSchema() {
        val c = PreprocessingConfig.parse(golden().toString())
        val j = golden()
        assertEquals(j.getInt("input_size"), c.inputSize)
        assertEquals(0.485, c.mean[0], 0.0)
        assertEquals(0.225, c.std[2], 0.0)
        assertEquals(j.getJSONArray("labels").length(), c.labels.size)
        assertEquals(Layout.NHWC, c.layout)
        assertEquals(TensorType.INT8, c.inputType)
        assertEquals(QuantParams(j.getDouble("input_scale"), j.getInt("input_zero_point")), c.inputQuant)
        assertEquals(TensorType.INT8, c.outputType)
        assertEquals(QuantParams(j.getDouble("output_scale"), j.getInt("output_zero_point")), c.outputQuant)
        assertEquals("model.tflite", c.modelFile)
    }

    @Test
    fun outputKindDefaultsToLogits() {
        assertEquals(OutputKind.PROBABILITIES, PreprocessingConfig.parse(golden().toString()).outputKind)
        assertEquals(OutputKind.LOGITS, PreprocessingConfig.parse(golden().put("output_kind", "logits").toString()).outputKind)
        assertEquals(OutputKind.LOGITS, PreprocessingConfig.parse(golden().apply { remove("output_kind") }.toString()).outputKind)
    }

    @Test
    fun temperatureDefaultsToOne() {
        assertEquals(Golden.manifest.getJSONObject("preprocessing").getDouble("temperature"),
            PreprocessingConfig.parse(golden().toString()).temperature, 0.0)
        assertEquals(1.0, PreprocessingConfig.parse(golden().apply { remove("temperature") }.toString()).temperature, 0.0)
        assertTrue(PreprocessingConfig.parse(golden().put("temperature", 1.0).toString()).toString().contains("uncalibrated"))
    }

    @Test
    fun floatModelNeedsNoQuantization() {
        val j = golden().put("input_dtype", "float32").put("output_dtype", "float32")
            .put("input_scale", JSONObject.NULL).put("input_zero_point", JSONObject.NULL)
            .put("output_scale", JSONObject.NULL).put("output_zero_point", JSONObject.NULL)
            .put("model_file", JSONObject.NULL)
        val c = PreprocessingConfig.parse(j.toString())
        assertEquals(TensorType.FLOAT32, c.inputType)
        assertNull(c.inputQuant)
        assertNull(c.outputQuant)
        assertEquals(PreprocessingConfig.DEFAULT_MODEL_FILE, c.modelFile)
    }

    @Test
    fun rejectsBadFiles() {
        assertRejected("{not json", "not valid JSON")
        assertRejected(golden().put("schema_version", 2).toString(), "schema_version", "2")
        assertRejected(golden().apply { remove("schema_version") }.toString(), "schema_version")
        assertRejected(golden().put("layout", "HWC").toString(), "layout", "HWC")
        assertRejected(golden().put("input_dtype", "int4").toString(), "input_dtype", "int4", "float32")
        assertRejected(golden().put("input_scale", JSONObject.NULL).toString(), "input_scale")
        assertRejected(golden().put("output_zero_point", JSONObject.NULL).toString(), "output_zero_point")
        assertRejected(golden().put("input_zero_point", 300).toString(), "input_zero_point", "300")
        assertRejected(golden().put("input_scale", -1.0).toString(), "input_scale")
        assertRejected(golden().put("std", JSONArray(listOf(1.0, 0.0, 1.0))).toString(), "std")
        assertRejected(golden().put("mean", JSONArray(listOf(0.5))).toString(), "mean")
        assertRejected(golden().put("input_size", 0).toString(), "input_size")
        assertRejected(golden().apply { remove("input_size") }.toString(), "input_size")
        assertRejected(golden().put("labels", JSONArray()).toString(), "labels")
        assertRejected(golden().put("output_kind", "scores").toString(), "output_kind", "scores", "logits")
        assertRejected(golden().put("color", "BGR").toString(), "color")
        for (bad in listOf<Any>(0, -1.5, "2", JSONObject.NULL)) {
            assertRejected(golden().put("temperature", bad).toString(), "temperature must be a finite number > 0")
        }
    }

    @Test
    fun labelsTxtMustMatch() {
        val c = PreprocessingConfig.parse(golden().toString())
        val text = c.labels.joinToString("\n") + "\n\n"
        Labels.check(Labels.parse(text), c)
        try {
            Labels.check(Labels.parse(text.replace("NV", "NEV")), c)
            fail("accepted mismatching labels")
        } catch (e: ConfigException) {
            assertTrue(e.message!!.contains("labels.txt"))
        }
    }

    @Test
    fun modelContractNamesEveryMismatch() {
        val c = PreprocessingConfig.parse(golden().toString())
        val n = c.inputSize
        val q = c.inputQuant!!
        val oq = c.outputQuant!!
        val input = TensorInfo(intArrayOf(1, n, n, 3), TensorType.INT8, "INT8", q)
        val output = TensorInfo(intArrayOf(1, c.labels.size), TensorType.INT8, "INT8", oq)
        assertEquals(emptyList<String>(), ModelContract.problems(c, input, output, c.labels.size))
        // float32 scale printed as float64 in the JSON: tiny relative differences are fine
        val close = TensorInfo(input.shape, TensorType.INT8, "INT8", QuantParams(q.scale.toFloat().toDouble(), q.zeroPoint))
        assertEquals(emptyList<String>(), ModelContract.problems(c, close, output, c.labels.size))

        val bad = ModelContract.problems(
            c,
            TensorInfo(intArrayOf(1, 3, n, n), TensorType.FLOAT32, "FLOAT32", null),
            TensorInfo(intArrayOf(1, 5), TensorType.INT8, "INT8", QuantParams(oq.scale * 2, oq.zeroPoint)),
            c.labels.size,
        )
        assertEquals(bad.toString(), 4, bad.size)
        assertTrue(bad[0], bad[0].contains("input shape"))
        assertTrue(bad[1], bad[1].contains("input_dtype int8") && bad[1].contains("FLOAT32"))
        assertTrue(bad[2], bad[2].contains("output shape"))
        assertTrue(bad[3], bad[3].contains("output_scale"))
        val wrongZp = TensorInfo(input.shape, TensorType.INT8, "INT8", QuantParams(q.scale, q.zeroPoint + 1))
        assertEquals(1, ModelContract.problems(c, wrongZp, output, c.labels.size).size)
        val unsupported = TensorInfo(input.shape, null, "INT16", null)
        assertTrue(ModelContract.problems(c, unsupported, output, c.labels.size).single().contains("INT16"))
    }
}
