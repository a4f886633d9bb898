plugins {
    id("com.android.application")
}

android {
    namespace = "org.ssdkd.demo"
    compileSdk = 36

    defaultConfig {
        applicationId = "org.ssdkd.demo"
        minSdk = 23
        targetSdk = 36
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // model.tflite is memory-mapped straight from the APK: it must be stored uncompressed
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    // LiteRT (formerly TensorFlow Lite), org.tensorflow.lite.Interpreter API. 1.4.x because the 2.x AARs
    // declare minSdk 24 and this app supports API 23.
    implementation("com.google.ai.edge.litert:litert:1.4.2")

    // The plain-Kotlin core (org.ssdkd.demo.core) is unit-tested on the JVM against golden vectors; android.jar's
    // org.json is a stub in unit tests, hence the real one here.
    testImplementation("junit:junit:4.13.2")
    testImplementation("org.json:json:20250517")
}
