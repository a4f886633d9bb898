package org.ssdkd.demo.core

import org.json.JSONArray
import org.json.JSONObject
import java.io.InputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.zip.GZIPInputStream

/** The golden vectors written by `python -m export.golden` (src/test/resources/golden on the test classpath). */
object Golden {
    val manifest: JSONObject by lazy { JSONObject(stream("manifest.json").use { String(it.readBytes(), Charsets.UTF_8) }) }

    val config: PreprocessingConfig by lazy {
        PreprocessingConfig.fromJson(manifest.getJSONObject("preprocessing"), "golden manifest.json")
    }

    fun images(): List<JSONObject> = objects(manifest.getJSONArray("images"))

    fun objects(a: JSONArray): List<JSONObject> = (0 until a.length()).map { a.getJSONObject(it) }

    fun ints(a: JSONArray): IntArray = IntArray(a.length()) { a.getInt(it) }

    fun floats(a: JSONArray): FloatArray = FloatArray(a.length()) { a.getDouble(it).toFloat() }

    /** A gzip'd raw array from the golden directory. */
    fun bytes(name: String): ByteArray = GZIPInputStream(stream(name)).use { it.readBytes() }

    fun littleEndianFloats(name: String): FloatArray {
        val fb = ByteBuffer.wrap(bytes(name)).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(fb.remaining()).also { fb.get(it) }
    }

    fun image(case: JSONObject): PixelImage =
        PixelImage.fromRgb(bytes(case.getJSONObject("files").getString("rgb")), case.getInt("width"), case.getInt("height"))

    fun quant(o: JSONObject): QuantParams = QuantParams(o.getDouble("scale"), o.getInt("zero_point"))

    private fun stream(name: String): InputStream =
        Golden::class.java.getResourceAsStream("/golden/$name")
            ?: error("golden file '$name' is not on the test classpath (android_demo/app/src/test/resources/golden)")
}

/** Bytes of a direct buffer, from position 0 to its limit. */
fun ByteBuffer.toByteArray(): ByteArray {
    val b = duplicate()
    b.rewind()
    return ByteArray(b.remaining()).also { b.get(it) }
}
