package org.ssdkd.demo.core

import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Output -> values -> calibrated probabilities -> top-k must match `Preprocessing.values` / `probabilities` (at the
 * contract's temperature) + a stable argsort. */
class PostprocessingGoldenTest {
    private val cases = Golden.objects(Golden.manifest.getJSONArray("postprocessing"))

    private fun config(dtype: String, kind: String, temperature: Double = 1.0): PreprocessingConfig =
        PreprocessingConfig.parse(
            JSONObject(Golden.manifest.getJSONObject("preprocessing").toString())
                .put("output_dtype", dtype).put("output_kind", kind).put("temperature", temperature).toString(),
        )

    @Test
    fun goldenHasFloatAndQuantizedCases() {
        val dtypes = cases.map { it.getString("output_dtype") }.toSet()
        assertTrue("cases: $dtypes", "float32" in dtypes && ("int8" in dtypes || "uint8" in dtypes))
        val kinds = cases.map { it.getString("output_kind") }.toSet()
        assertTrue("kinds: $kinds", "logits" in kinds && Golden.config.outputKind.jsonName in kinds)
        // the manifest's contract has a fitted temperature, so the cases below prove the app applies it
        assertTrue("temperature ${Golden.config.temperature}", Golden.config.temperature != 1.0)
        val tempered = cases.filter { it.getDouble("temperature") != 1.0 }.map { it.getString("output_kind") }.toSet()
        assertEquals(setOf("logits", Golden.config.outputKind.jsonName), tempered)
    }

    @Test
    fun dequantizeIsExact() {
        for (case in cases.filter { it.getString("output_dtype") != "float32" }) {
            val q = QuantParams(case.getDouble("output_scale"), case.getInt("output_zero_point"))
            val values = Postprocessing.dequantize(Golden.ints(case.getJSONArray("output")), q)
            assertArrayEquals(case.getString("name"), Golden.floats(case.getJSONArray("values")), values, 0f)
        }
    }

    @Test
    fun rawOutputBufferFollowsTheConfig() {
        val config = Golden.config
        val matching = cases.filter {
            it.getString("output_dtype") == config.outputType.jsonName && it.getString("output_kind") == config.outputKind.jsonName
        }
        assertTrue("no golden case for the manifest's own output contract", matching.isNotEmpty())
        for (case in matching) {
            val codes = Golden.ints(case.getJSONArray("output"))
            val buf = ByteBuffer.allocateDirect(codes.size).order(ByteOrder.nativeOrder())
            codes.forEach { buf.put(it.toByte()) }
            val name = case.getString("name")
            assertArrayEquals(name, Golden.floats(case.getJSONArray("values")), Postprocessing.values(buf, config), 0f)
            val probs = Postprocessing.probabilities(buf, config)
            assertArrayEquals(name, Golden.floats(case.getJSONArray("probabilities")), probs, 1e-6f)
        }
    }

    @Test
    fun float32OutputBuffer() {
        val buf = ByteBuffer.allocateDirect(12).order(ByteOrder.nativeOrder())
        buf.putFloat(1.5f).putFloat(-2f).putFloat(0.25f)
        val logits = config("float32", "logits")
        assertArrayEquals(floatArrayOf(1.5f, -2f, 0.25f), Postprocessing.values(buf, logits), 0f)
        assertArrayEquals(Postprocessing.softmax(floatArrayOf(1.5f, -2f, 0.25f)), Postprocessing.probabilities(buf, logits), 0f)
        // a model that ends in softmax is not softmaxed twice
        val probs = config("float32", "probabilities")
        assertArrayEquals(floatArrayOf(1.5f, -2f, 0.25f), Postprocessing.probabilities(buf, probs), 0f)
    }

    @Test
    fun theContractsTemperatureCalibratesButNeverReorders() {
        val buf = ByteBuffer.allocateDirect(12).order(ByteOrder.nativeOrder())
        buf.putFloat(1.5f).putFloat(-2f).putFloat(0.25f)
        val hot = Postprocessing.probabilities(buf, config("float32", "logits", 2.0))
        assertArrayEquals(Postprocessing.softmax(floatArrayOf(0.75f, -1f, 0.125f)), hot, 1e-7f)
        val plain = Postprocessing.probabilities(buf, config("float32", "logits"))
        assertTrue("T = 2 flattens: ${hot[0]} < ${plain[0]}", hot[0] < plain[0])
        assertArrayEquals(Postprocessing.topK(plain, 3), Postprocessing.topK(hot, 3))
        // the same numbers from a model's own softmax: p^(1/T) renormalised is softmax(logits / T)
        val p = Postprocessing.softmax(floatArrayOf(1.5f, -2f, 0.25f))
        assertArrayEquals(hot, Postprocessing.tempered(p, 2.0, OutputKind.PROBABILITIES), 1e-6f)
        assertArrayEquals(p, Postprocessing.tempered(p, 1.0, OutputKind.PROBABILITIES), 0f)
    }

    @Test
    fun probabilitiesAndTopKMatchPython() {
        for (case in cases) {
            val name = case.getString("name")
            val values = Golden.floats(case.getJSONArray("values"))
            val kind = OutputKind.fromJson(case.getString("output_kind"), "$name: output_kind")
            val probs = Postprocessing.tempered(values, case.getDouble("temperature"), kind)
            assertArrayEquals(name, Golden.floats(case.getJSONArray("probabilities")), probs, 1e-6f)
            val k = case.getInt("top_k")
            assertArrayEquals(name, Golden.ints(case.getJSONArray("top_indices")), Postprocessing.topK(probs, k))
            val preds = Postprocessing.predictions(probs, Golden.config.labels, k)
            val labels = case.getJSONArray("top_labels")
            assertEquals(name, (0 until labels.length()).map { labels.getString(it) }, preds.map { it.label })
            assertArrayEquals(
                name,
                Golden.floats(case.getJSONArray("top_probabilities")),
                preds.map { it.probability }.toFloatArray(),
                1e-6f,
            )
        }
    }

    @Test
    fun softmaxSurvivesLargeLogits() {
        val p = Postprocessing.softmax(floatArrayOf(1000f, 999f, -1000f))
        assertEquals(1.0, p.sumOf { it.toDouble() }, 1e-6)
        assertTrue(p.all { it.isFinite() })
        assertArrayEquals(intArrayOf(0, 1), Postprocessing.topK(p, 2))
    }

    @Test
    fun percentilesInterpolateLikeNumpy() {
        val v = DoubleArray(10) { (10 - it).toDouble() } // 10..1, unsorted on purpose
        assertEquals(5.5, LatencyStats.percentile(v, 50.0), 1e-12)
        assertEquals(9.1, LatencyStats.percentile(v, 90.0), 1e-12)
        assertEquals(1.0, LatencyStats.percentile(v, 0.0), 0.0)
        assertEquals(10.0, LatencyStats.percentile(v, 100.0), 0.0)
        assertEquals(3.0, LatencyStats.percentile(doubleArrayOf(3.0), 90.0), 0.0)
    }
}
