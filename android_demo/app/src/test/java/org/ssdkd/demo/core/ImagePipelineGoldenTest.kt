package org.ssdkd.demo.core

import org.json.JSONObject
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.nio.ByteOrder
import kotlin.math.abs

/** Pixels -> model input must match `models/preprocessing.py`: int8/uint8 byte-identical, float32 bit-identical. */
class ImagePipelineGoldenTest {
    private val config = Golden.config
    private val size = config.inputSize

    private fun floatInput(image: PixelImage, layout: Layout = Layout.NHWC): FloatArray =
        ImagePipeline.normalize(ImagePipeline.resizeCenterCrop(image, size), size, config.mean, config.std, layout)

    private fun assertFloatsMatch(name: String, expected: FloatArray, actual: FloatArray) {
        assertEquals("$name: element count", expected.size, actual.size)
        var maxDiff = 0.0
        var differing = 0
        for (i in expected.indices) {
            maxDiff = maxOf(maxDiff, abs(expected[i].toDouble() - actual[i].toDouble()))
            if (expected[i].toRawBits() != actual[i].toRawBits()) differing++
        }
        assertTrue("$name: float input differs from Python by up to $maxDiff (tolerance 1e-5)", maxDiff <= 1e-5)
        assertEquals("$name: float input values not bit-identical to numpy's", 0, differing)
    }

    private fun forEachCase(block: (JSONObject) -> Unit) {
        val cases = Golden.images()
        assertTrue("golden manifest has no image cases", cases.size >= 4)
        cases.forEach(block)
    }

    @Test
    fun cropGeometryMatchesPython() = forEachCase { case ->
        val c = case.getJSONObject("crop")
        val crop = ImagePipeline.crop(case.getInt("height"), case.getInt("width"), size)
        assertEquals(case.getString("name"), Crop(c.getInt("k"), c.getInt("square"), c.getInt("top"), c.getInt("left")), crop)
    }

    @Test
    fun goldenCasesCoverEveryResizePath() {
        val crops = Golden.images().map { ImagePipeline.crop(it.getInt("height"), it.getInt("width"), size) }
        assertTrue("no box-average case (k > 1)", crops.any { it.k > 1 })
        assertTrue("no upsampling case", crops.any { it.k == 1 && it.square < size })
        assertTrue("no downsampling case", crops.any { it.k == 1 && it.square > size })
        assertTrue("no portrait case", Golden.images().any { it.getInt("height") > it.getInt("width") })
    }

    @Test
    fun floatInputMatchesPython() = forEachCase { case ->
        val expected = Golden.littleEndianFloats(case.getJSONObject("files").getString("input_float32"))
        assertFloatsMatch(case.getString("name"), expected, floatInput(Golden.image(case)))
    }

    @Test
    fun argbPixelsGiveTheSameInputAsRgbBytes() = forEachCase { case ->
        val rgb = Golden.bytes(case.getJSONObject("files").getString("rgb"))
        val argb = IntArray(rgb.size / 3) {
            val r = rgb[3 * it].toInt() and 0xFF
            val g = rgb[3 * it + 1].toInt() and 0xFF
            val b = rgb[3 * it + 2].toInt() and 0xFF
            (0x80 shl 24) or (r shl 16) or (g shl 8) or b // alpha must be ignored
        }
        val image = PixelImage.fromArgb(argb, case.getInt("width"), case.getInt("height"))
        val expected = Golden.littleEndianFloats(case.getJSONObject("files").getString("input_float32"))
        assertFloatsMatch(case.getString("name") + " (ARGB)", expected, floatInput(image))
    }

    @Test
    fun int8InputIsByteIdentical() = forEachCase { case ->
        val x = floatInput(Golden.image(case))
        val expected = Golden.bytes(case.getJSONObject("files").getString("input_int8"))
        val actual = ImagePipeline.encode(x, TensorType.INT8, Golden.quant(case.getJSONObject("int8"))).toByteArray()
        assertArrayEquals(case.getString("name"), expected, actual)
    }

    @Test
    fun uint8InputIsByteIdentical() {
        val cases = Golden.images().filter { it.has("uint8") }
        assertTrue("golden manifest has no uint8 case", cases.isNotEmpty())
        for (case in cases) {
            val x = floatInput(Golden.image(case))
            val expected = Golden.bytes(case.getJSONObject("files").getString("input_uint8"))
            val actual = ImagePipeline.encode(x, TensorType.UINT8, Golden.quant(case.getJSONObject("uint8"))).toByteArray()
            assertArrayEquals(case.getString("name"), expected, actual)
        }
    }

    @Test
    fun modelInputFollowsTheConfig() = forEachCase { case ->
        // the golden contract is int8 NHWC: the whole path must give the committed int8 buffer
        assertEquals(TensorType.INT8, config.inputType)
        val expected = Golden.bytes(case.getJSONObject("files").getString("input_int8"))
        assertArrayEquals(case.getString("name"), expected, ImagePipeline.modelInput(Golden.image(case), config).toByteArray())
    }

    @Test
    fun nchwLayoutIsTheTransposeOfNhwc() = forEachCase { case ->
        val nhwc = Golden.littleEndianFloats(case.getJSONObject("files").getString("input_float32"))
        val nchw = floatInput(Golden.image(case), Layout.NCHW)
        val plane = size * size
        for (p in 0 until plane) {
            for (c in 0 until 3) assertEquals(nhwc[p * 3 + c].toRawBits(), nchw[c * plane + p].toRawBits())
        }
    }

    @Test
    fun quantizeRoundsHalfToEvenAndSaturates() {
        val q = QuantParams(0.5, 0)
        // 0.25 / 0.5 = 0.5 -> 0 ; 0.75 / 0.5 = 1.5 -> 2 ; -0.25 -> -0.5 -> -0 ; 1.25 -> 2.5 -> 2
        assertEquals(0, ImagePipeline.quantize(0.25f, q, TensorType.INT8))
        assertEquals(2, ImagePipeline.quantize(0.75f, q, TensorType.INT8))
        assertEquals(0, ImagePipeline.quantize(-0.25f, q, TensorType.INT8))
        assertEquals(2, ImagePipeline.quantize(1.25f, q, TensorType.INT8))
        assertEquals(127, ImagePipeline.quantize(1000f, q, TensorType.INT8))
        assertEquals(-128, ImagePipeline.quantize(-1000f, q, TensorType.INT8))
        assertEquals(0, ImagePipeline.quantize(-1000f, q, TensorType.UINT8))
        assertEquals(255, ImagePipeline.quantize(1000f, q, TensorType.UINT8))
    }

    @Test
    fun float32EncodingIsNativeOrder() {
        val buf = ImagePipeline.encode(floatArrayOf(1.5f, -2f), TensorType.FLOAT32, null)
        assertEquals(8, buf.capacity())
        assertEquals(1.5f, buf.order(ByteOrder.nativeOrder()).getFloat(0), 0f)
    }
}
